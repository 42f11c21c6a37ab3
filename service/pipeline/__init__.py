"""Photo -> encoding: decode, detect, align, the network, the encoder, and the pipeline that strings them.

Importing this package loads nothing heavy: TensorFlow comes in only with ``network``, ``encoder``,
``detect`` (when a detector is built) and ``pipeline``.
"""
