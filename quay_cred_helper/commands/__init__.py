"""One module per `quay-cred-helper` command: each adds its parser and runs with what the entry point built."""
