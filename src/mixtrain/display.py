"""How times and durations are shown, the same in the terminal and the dashboard."""

from __future__ import annotations

import datetime as dt


def fmt_time(ts) -> str:
    if ts is None:
        return "-"
    if isinstance(ts, (int, float)):  # Iceberg snapshot timestamps are epoch milliseconds
        ts = dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
    if isinstance(ts, str):
        return ts
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
