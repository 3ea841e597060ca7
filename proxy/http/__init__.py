"""HTTP: the public listener, the per-request exchange, the gated relay, the upstream
pool, forwarding and response headers, header stages and WebSocket relay. The only
place that touches aiohttp's private surface is `_aiohttp.py`."""
