"""The service layer: async, talks to the upstream, knows no HTTP-server types."""
