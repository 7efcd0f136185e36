"""Push or pull an artifact with oras-py (PyPI `oras`), as a user's script does.

    python oras_py_client.py push REGISTRY/NS/REPO:TAG FILE
    python oras_py_client.py pull REGISTRY/NS/REPO:TAG OUTDIR

oras-py reads ~/.docker/config.json, runs the credHelpers' (or credsStore's)
`docker-credential-NAME get` with the bare host, and sends Username and
Secret as Basic credentials to the registry's token realm.
"""

import os
import sys

import oras.client

verb, target, path = sys.argv[1:4]
client = oras.client.OrasClient(insecure=True)  # the test registry speaks plain http on 127.0.0.1
if verb == "push":
    os.chdir(os.path.dirname(path))  # oras-py names the layer after the path it is given
    client.push(files=[os.path.basename(path)], target=target)
else:
    for pulled in client.pull(target=target, outdir=path):
        print(pulled)
