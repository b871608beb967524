"""The lab's page (`python -m cellssl_jax.app FOLDER`): an ASGI app over the project's libraries
(routes in server.py, labels and undo in state.py, cells and thumbnails in cells.py, long work
in work.py) and a plain HTML/JS page in static/. It decides no class itself: every result
comes from `featurize`, `proposals` and `labelling.classify_and_write`, and the export is what
`python -m cellssl_jax.classify` reproduces from the command line."""
