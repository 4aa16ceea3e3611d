"""The one redactor: whole values, each line of a multi-line value, and values cut across stream chunks."""

from __future__ import annotations

from mixtrain.workflows.redact import Redactor, StreamRedactor

PEM = "-----BEGIN KEY-----\nAAAAline-one\nBBBBline-two\n-----END KEY-----"


def test_whole_value_and_each_line_are_redacted_in_text_and_bytes():
    r = Redactor(["sk-live-123456", PEM, "abc"])  # "abc" is too short to redact safely
    text = f"token sk-live-123456\n{PEM}\nonly one line: BBBBline-two\nabc stays"
    out = r.text(text)
    assert "sk-live" not in out and "line-one" not in out and "line-two" not in out and "BEGIN KEY" not in out
    assert "abc stays" in out
    assert r.bytes(text.encode()) == out.encode()


def test_stream_catches_a_value_split_across_chunks_and_lines():
    r = Redactor(["sk-live-123456", PEM])
    data = ("x" * 9000 + "sk-live-123456" + "y" * 9000 + "\n" + PEM + "\n").encode()
    for size in (1, 7, 4096, 8193):
        s = StreamRedactor(r)
        out = b"".join(s.feed(data[i : i + size]) for i in range(0, len(data), size)) + s.flush()
        assert b"sk-live" not in out and b"line-one" not in out and b"line-two" not in out, size
        assert out.count(b"***") >= 2, size  # the token, and the PEM whole or line by line
        assert out.replace(b"***", b"").strip(b"xy\n") == b"", size  # nothing else was cut


def test_from_env_reads_only_the_named_secrets():
    env = {"MIXTRAIN_SECRET_NAMES": "A,B", "A": "first-secret", "B": "second\nsecret-two", "C": "not-a-secret"}
    r = Redactor.from_env(env)
    assert r.text("first-secret second secret-two not-a-secret") == "*** *** *** not-a-secret"
