"""The gateway: holds no model; orchestrates a conversation turn across the four services
and streams events and audio both ways (gRPC `milo.gateway.v1.Conversation`)."""
