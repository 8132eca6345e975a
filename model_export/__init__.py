"""Train and export the IMDB sentiment transformer the way TF Serving expects it.

Run as ``python -m model_export``. The layout written is ``OUT/<model-name>/<version>/`` (a
SavedModel with warm-up records) plus ``OUT/<model-name>/instances.json`` (the rows every load
test sends) and ``OUT/<model-name>/metadata.json``.
"""

VOCAB_SIZE = 20000
MAXLEN = 200
INPUT_NAME = "input_1"
OUTPUT_NAME = "output_0"
SIGNATURE_NAME = "serving_default"


class ExportError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""
