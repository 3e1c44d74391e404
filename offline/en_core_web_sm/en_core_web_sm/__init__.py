"""Stand-in for spaCy's ``en_core_web_sm`` that unstructured loads, offline and fast.

unstructured runs every paragraph through spaCy (tagger and parser) only to tell
NarrativeText from Text, a distinction Citewise never uses: headings come from markup (HTML
``<h1>``…, Markdown ``#``, Word heading styles) and both text kinds become body blocks. That
NLP pass was about 70% of Markdown parsing time, so this package answers
``spacy.load("en_core_web_sm")`` with a blank English pipeline and a rule-based sentencizer:
the parsed output Citewise stores is the same, at a fraction of the cost, and nothing is
downloaded. (bench/ingest.py measures the effect.)
"""

from typing import Any

import spacy
from spacy.language import Language


def load(**overrides: Any) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


__all__ = ["load"]
