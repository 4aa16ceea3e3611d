"""The OpenAI-compatible model server (`mixtrain model serve`): an entry point like cli/, nothing imports it.

openai.py   request schema, validation, OpenAI-exact response/chunk/error objects
pool.py     one base model per base in memory, adapters by name (PEFT), processors per served name
batcher.py  dynamic batching: concurrent requests for one served name -> one generate_batch call
app.py      FastAPI routes: auth, limits, /v1/models, /v1/chat/completions (JSON and SSE), /health
vllm.py     `--engine vllm`: the `vllm serve` child command line and its lifetime
server.py   what the CLI calls: resolve models, check security options, run uvicorn or vLLM
"""
