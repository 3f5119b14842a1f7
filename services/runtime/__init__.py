"""The runtime every Milo service is built on: server, health, reflection, metrics,
config, auth, admission control and error mapping. A service's own folder holds only its
servicer and engine."""
