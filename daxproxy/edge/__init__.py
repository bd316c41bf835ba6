"""The edge: the client connections' HTTP protocol (httptools), routes, serving, the command
line."""
