"""The bottom layer: helpers every app may import (database units, asyncio, outage logging, the Redis wire
client, encryption at rest, metric definitions). It imports no app."""
