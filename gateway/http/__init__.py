"""The gateway's HTTP bridge: REST routes, OpenAI-compatible routes, a WebSocket for
conversations, operations endpoints and the web page, all thin adapters over GatewayCore."""
