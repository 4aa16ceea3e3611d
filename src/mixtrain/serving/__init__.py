"""The OpenAI-compatible model server (`mixtrain model serve`): an entry point like cli/, nothing imports it.

spec.py     ServeSpec: the one schema of serve's options (the CLI's flags and checks) and the request limits
openai.py   request schema, validation, OpenAI-exact response/chunk/error objects
pool.py     one base model per base in memory, adapters by name (PEFT), processors per served name
batcher.py  dynamic batching: concurrent requests for one served name -> one generate_batch call
handler.py  the chat-completions handler: parse, prepare (images, context length, settings), serve or stream
fetch.py    image URLs fetched in memory, never from private/loopback/link-local addresses unless allowed
app.py      FastAPI routes (thin): guards (Host, Content-Type, API key), /v1/models, /v1/chat/completions, /health
vllm.py     `--engine vllm`: the `vllm serve` child command line and its lifetime
server.py   what the CLI calls: resolve models, bind, then run uvicorn or vLLM
"""
