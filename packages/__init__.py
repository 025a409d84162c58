"""The framework's local package registry: our packages under settleproof/, third-party ones fetched by `make install`."""
