"""Sans-IO wire codecs: request and response bodies, error bodies."""
