"""Answer generators: each turns a question and numbered passages into streamed answer text.

``build_generator`` (in ``citewise.wiring``) picks one by ``CITEWISE_ANSWER_PROVIDER``.
Adding a provider is one module here and one line in that factory.
"""
