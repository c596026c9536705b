"""Events: CloudEvents envelopes, the bus Protocol and its engines."""
