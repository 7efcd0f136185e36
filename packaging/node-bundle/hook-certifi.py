# The bundled certifi is our stub (packaging/node-bundle/stubs/certifi.py): no cacert.pem to collect,
# the node's own trust store serves.
