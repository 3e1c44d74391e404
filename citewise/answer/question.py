"""What a question asks for, and which text units can never answer one.

Rules, not weights fitted to a corpus: each is a pattern of English that means the same thing
in any documentation or paper. A question is a procedure ("how do I ..."), a quantity ("how
many", "when", "what year"), a definition ("what is X") or anything else; units that point
elsewhere ("in the next section", "see below", "read more"), label a section, or cite a
reference are never chosen as an answer, whatever words they share with the question.
"""

from __future__ import annotations

import enum
import re
from difflib import get_close_matches

from citewise.answer.citations import key_content
from citewise.answer.units import Unit
from citewise.search.lexical import tokenize


class Kind(enum.Enum):
    PROCEDURE = "procedure"
    QUANTITY = "quantity"
    DEFINITION = "definition"
    NAME = "name"  # which package, class, option... to use
    YES_NO = "yes_no"  # "Does ...?", "Is it fine to ...?", "Can I ...?"
    OTHER = "other"


_PROCEDURE = re.compile(
    r"^\s*(?:how\s+(?:do|can|could|should|would|to|does\s+one|is\s+it\s+possible)\b"
    r"|what\s+(?:are\s+|is\s+)?(?:the\s+)?(?:steps|way)\b|(?:is\s+there\s+a\s+way|steps)\s+to\b)",
    re.IGNORECASE,
)
_QUANTITY = re.compile(
    # "how many" wherever it stands: "Roughly how long does a certificate last?"
    r"\bhow\s+(?:many|much|long|large|big|old|often|far|fast|high|tall|wide|deep|heavy|"
    r"early|late|soon|frequently)\b"
    # "in which (FastAPI) version", "what (annual) rate"
    r"|^\s*(?:(?:in|at|by|from|since)\s+)?(?:what|which)\s+(?:[\w-]+\s+){0,2}(?:year|date|"
    r"decade|century|percentage|percent|proportion|fraction|number|amount|size|rate|port|"
    r"version|status\s+code|age|temperature|speed|length|dose|ratio)s?\b"
    r"|^\s*when\b|^\s*what\s+(?:is|was|are|were)\s+the\s+"
    r"(?:number|percentage|rate|size|amount|value|length|duration|age|year|date|port|version|"
    r"status\s+code|default\s+(?:value|port|number|size|limit|timeout))\b",
    re.IGNORECASE,
)
_NAME = re.compile(
    # "which" before a noun asks for one named thing: "Which address does it bind to?"
    r"^\s*(?:(?:in|at|on|for|from|with|by|to)\s+)?which\s+(?!(?:is|are|was|were|does|do|did|"
    r"can|could|should|would|will|of)\b)\w+"
    r"|^\s*(?:which|what)\s+(?:(?!(?:is|are|was|were|does|do)\b)\w+\s+)?(?:package|library|module|class|function|method|"
    r"parameter|argument|option|flag|setting|variable|command|tool|decorator|field|attribute|"
    r"header|type|exception|middleware|dependency|extra|plugin|key)s?\b",
    re.IGNORECASE,
)
_DEFINITION = re.compile(
    r"^\s*(?:what|who)(?:'s|\s+is|\s+are|\s+was|\s+were)\s+(?:an?\s+|the\s+)?(?P<subject>[^?]+?)"
    r"\s*\??\s*$|^\s*what\s+does\s+(?P<acronym>[^?]+?)\s+(?:mean|stand\s+for)\s*\??\s*$"
    # "What makes up an origin?": a definition by its parts
    r"|^\s*what\s+(?:makes\s+up|constitutes|comprises)\s+(?:an?\s+|the\s+)?(?P<whole>[^?,]+?)"
    r"\s*(?:,[^?]*)?\??\s*$",
    re.IGNORECASE,
)
_YES_NO = re.compile(
    r"^\s*(?:do|does|did|is|are|was|were|can|could|should|will|would|may|must|has|have|had)"
    r"(?:n['\u2019]?t)?\s+\w+",
    re.IGNORECASE,
)
# What a sentence that settles a yes/no question says: it denies, restricts or insists.
_POLARITY = re.compile(
    r"\b(?:not|no|never|none|nothing|only|always|must|cannot|can't|won't|isn't|aren't|"
    r"doesn't|don't|shouldn't|mustn't|required|forbidden|allowed|instead|without)\b",
    re.IGNORECASE,
)
_SIGNPOST = re.compile(
    r"\b(?:in|see|read)\s+the\s+(?:next|previous|following|last|later|coming|other)\s+"
    r"(?:section|chapter|page|part|step|tutorial)s?\b"
    r"|\byou(?:\s+will|\s+would|['\u2019]ll)\s+(?:see|read|learn|find|discover)\b"
    r"|\b(?:see|read|check|go\s+to)\s+(?:below|above|more|it\s+(?:below|above))\b"
    r"|\b(?:click|tap)\s+(?:here|below|the\s+link)\b|\b(?:learn|read)\s+more\b"
    r"|\bmore\s+(?:info|information|details)\s+(?:about|on|in|at)\b"
    r"|\bas\s+(?:we|you)\s+(?:saw|have\s+seen|will\s+see|'ll\s+see)\b"
    r"|\b(?:covered|explained|described|discussed)\s+(?:later|below|above|in\s+(?:detail\s+)?in)\b"
    r"|\bwe(?:\s+will|['\u2019]ll)\s+(?:see|cover|discuss|look\s+at|explain)\b"
    r"|\blater\s+in\s+(?:this|the)\b|\btable\s+of\s+contents\b"
    # "For more details, check Starlette's documentation for testing WebSockets."
    r"|^\s*for\s+more\s+(?:details|information|info|examples)\b"
    r"|\b(?:check|see|read|consult|refer\s+to|visit)\s+(?:out\s+)?(?:the\s+|[\w-]+['\u2019]s\s+)?"
    r"(?:official\s+)?(?:documentation|docs|guide|reference|tutorial)\b"
    r"|\byou\s+(?:also\s+|already\s+)?(?:read|saw|learned|learnt)\b"
    r"|\b(?:shown|given|listed|described)\s+(?:above|below)\b|\bthe\s+\w+\s+(?:above|below)\b"
    r"|\blet'?s\s+(?:see|start|begin|upgrade|continue|go|now)\b|\bprevious\s+example\b"
    # a pointer to where the answer is, not the answer: "is explained in the refund policy"
    r"|\b(?:is|are)\s+(?:explained|described|covered|detailed|documented|listed)\s+(?:in|on|under)\b",
    re.IGNORECASE,
)
_REFERENCE = re.compile(
    r"\bet\s+al\.|\bdoi\s*:|\barxiv\b|\bISBN\b|\bpp\.\s*\d|\bvol\.\s*\d|©|\bcopyright\b"
    r"|^\s*\[\d+\]\s|\(\s*(?:19|20)\d\d[a-z]?\s*\)\s*[.,]|\b(?:19|20)\d\d;\s*\d+"
    # a changelog entry: "Upgrade typer. PR #384 by @someone"
    r"|\bPR\s*#\d+|\bby\s+@[\w-]+|\(#\d{2,}\)",
    re.IGNORECASE,
)
# A list item led by an emoji is a changelog entry ("✨ Add support for ..."); a sentence led
# by one is a warning in the text ("🚨 Keep in mind that ...").
_EMOJI_LEAD = re.compile(r"^[^\w\s]*[\U0001F300-\U0001FAFF\u2600-\u27bf\u2b00-\u2bff]")
_LABEL = re.compile(
    r"^\s*(?:abstract|introduction|background|methods?|materials|results?|discussion|"
    r"conclusions?|text|keywords|references|acknowledg\w*|summary|note|tip|warning|info)\s*:?\s*$",
    re.IGNORECASE,
)
# Template and include directives of documentation tools (MkDocs snippets, Jinja, Hugo):
# markup for the site's build, not text a reader sees.
_DIRECTIVE = re.compile(r"^\s*(?:\{[*%{<].*[*%}>]\}|--8<--.*|\{\{<.*>\}\})\s*$", re.DOTALL)
# Drawn boxes and rules (a terminal screenshot pasted as text): layout, not an answer.
_DRAWING = re.compile(r"[\u2500-\u257f\u2580-\u259f]")
# A diagram written as text (Mermaid): a picture's source, not steps to follow; its first
# line names the kind of diagram, the others are arrows ("Client->>Proxy: GET") or notes.
_DIAGRAM = re.compile(
    r"^\s*(?:sequenceDiagram|flowchart|graph\s+[A-Z]{2}|classDiagram|stateDiagram|erDiagram|"
    r"gantt|pie|journey|mindmap|participant|actor|Note\s+(?:over|left|right))\b"
    r"|^\s*[\w.]+\s*(?:-{1,2}>>|-{1,2}x|-{1,2}\)|--?>)\s*[\w.]+\s*:",
    re.MULTILINE,
)
# A quantity as digits or in words ("three lineages", "none of the treaties"), or how often
# ("rarely travels alone").
_QUANTITY_STATED = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundreds?|thousands?|millions?|billions?|dozens?|none|single|double|twice|"
    r"thrice|half|quarter|several|rarely|seldom|never|always|often|usually|daily|weekly|"
    r"monthly|yearly|annually|hourly)\b",
    re.IGNORECASE,
)
_QUESTION_WORD = re.compile(r"^(?:wh\w*|how)$")
_VERB_LIKE = re.compile(
    r"\b(?:is|are|was|were|be|been|has|have|had|do|does|did|can|could|will|would|should|may|"
    r"might|must|\w+(?:ed|es|s))\b",
    re.IGNORECASE,
)


def kind_of(question: str) -> Kind:
    if _PROCEDURE.search(question):
        return Kind.PROCEDURE
    if _QUANTITY.search(question):
        return Kind.QUANTITY
    if _NAME.search(question):
        return Kind.NAME
    if _DEFINITION.search(question):
        return Kind.DEFINITION
    if _YES_NO.search(question):
        return Kind.YES_NO
    return Kind.OTHER


def subject_of(question: str) -> str | None:
    """What a "what is X" question asks about, in lower case; None for other questions."""
    match = _DEFINITION.search(question)
    if match is None:
        return None
    named = match.group("subject") or match.group("acronym") or match.group("whole") or ""
    subject = named.strip(" \"'`").lower()
    # "what is X for / meant to be / used for": the subject is X
    subject = re.sub(r"\s+(?:for|meant|used|about|good|supposed|made|based)\b.*$", "", subject)
    return subject or None


# A changelog's page or section: "Release Notes > 0.28.0 (2019-06-05)", "Changelog", "What's new".
_CHANGELOG = re.compile(
    r"\b(?:release\s+notes|change\s*log|changes\s+in|what['\u2019]?s\s+new|version\s+history)\b"
    r"|(?:^|>\s*)v?\d+\.\d+(?:\.\d+)?\s*(?:\(\d{4}-\d{2}-\d{2}\))?\s*(?:>|$)",
    re.IGNORECASE,
)


def from_changelog(title: str, heading: str) -> bool:
    """Whether a passage belongs to a changelog, by its page title or heading path."""
    return bool(_CHANGELOG.search(title) or _CHANGELOG.search(heading))


def asks_about_changes(kind: Kind) -> bool:
    """Only a "when / which version" question is answered by a changelog entry: a how-to or
    a definition taken from one describes a change, not the thing ("Implement dependency
    overrides for testing. PR #291")."""
    return kind is Kind.QUANTITY


def may_answer(unit: Unit, kind: Kind, min_words: int) -> bool:
    """Whether ``unit`` can stand as an answer at all."""
    words = unit.words
    if is_markup(unit):
        return False
    if unit.kind == "code":
        return kind is Kind.PROCEDURE
    if len(words.split()) < min_words or _LABEL.match(words):
        return False
    if _SIGNPOST.search(words) or _REFERENCE.search(words):
        return False
    if unit.kind == "item" and _EMOJI_LEAD.match(words):
        return False
    return not (unit.kind == "sentence" and _looks_like_heading(words))


def is_markup(unit: Unit) -> bool:
    """A build directive or a drawing: never shown, not even inside a quoted block."""
    words = unit.words
    return bool(_DIRECTIVE.match(unit.text) or _DIAGRAM.match(unit.text)) or len(
        _DRAWING.findall(words)
    ) * 20 > len(words)


# What documentation names when it says how: an API name (CamelCase, snake_case, a call, a
# decorator), a command-line flag, or a keyword argument.
_API_NAME = re.compile(
    r"\b[A-Z][a-z]+[A-Z]\w*|\b[A-Z]{2,}[a-z]\w*|\b[a-z]+_[a-z_]+\b|\w\(\)|(?<!\w)@\w+|(?<!\w)--?[a-z][\w-]+|\b\w+=\w"
)


# "Which package / library / extra ...": the answer names something to install.
_ASKS_FOR_PACKAGE = re.compile(r"\b(?:package|library|module|extra|plugin|distribution)s?\b")
_PACKAGE = re.compile(r"\b[a-z][a-z0-9]+-[a-z0-9-]+\b|\binstall\s+\S+|\b[a-z]+[0-9][a-z0-9]*\b")


def carries_wanted(
    text: str, kind: Kind, subject: str | None, question_words: frozenset[str] = frozenset()
) -> float:
    """1.0 when ``text`` holds what the question asks for, -1.0 when it cannot, else 0."""
    if kind is Kind.PROCEDURE:
        return 1.0 if _API_NAME.search(text) and _names_something(text, question_words) else 0.0
    if kind is Kind.NAME and _ASKS_FOR_PACKAGE.search(" ".join(question_words)):
        return 1.0 if _PACKAGE.search(text) else 0.0
    if kind is Kind.NAME:
        return 1.0 if _names_something(text, question_words) else 0.0
    if kind is Kind.QUANTITY:
        return 1.0 if _QUANTITY_STATED.search(text) else -1.0
    if kind is Kind.YES_NO:
        return 1.0 if _POLARITY.search(text.replace("\u2019", "'")) else 0.0
    if kind is Kind.DEFINITION and subject:
        return _defines(text.lower(), subject)
    return 0.0


# A specific thing a sentence can name: an API, a package, a number or version, a quoted
# value, or a capitalised name inside the sentence.
_SPECIFIC = re.compile(
    r"[A-Za-z]+[A-Z_]\w*|\w+\(\)|@\w+|--?[a-z][\w-]+|\w+=\w+|[a-z][a-z0-9]+-[a-z0-9-]+"
    r"|\d[\w.:/-]*|[\"'\u201c`]([^\"'\u201d`]{2,40})[\"'\u201d`]|(?<=[a-z,;] )[A-Z][\w-]+"
)


def api_names(text: str, question_words: frozenset[str]) -> set[str]:
    """The API names (classes, functions, options, flags) ``text`` names that the question
    does not, in lower case."""
    return {
        name
        for name in (m.group(0).lower().rstrip("=") for m in _API_NAME.finditer(text))
        if name not in question_words
        and not all(word in question_words for word in re.findall(r"[a-z]+", name))
    }


def _names_something(text: str, question_words: frozenset[str]) -> bool:
    """Whether ``text`` names a specific thing the question does not already name."""
    for match in _SPECIFIC.finditer(text):
        named_thing = (match.group(1) or match.group(0)).lower()
        if named_thing not in question_words and not any(
            word in question_words for word in re.findall(r"\w+", named_thing)
        ):
            return True
    return False


def _defines(text: str, subject: str) -> float:
    """2.0 for a sentence that opens by saying what ``subject`` is ("OpenAPI (previously known
    as Swagger) is the open specification ..."), 1.0 for one that says it further on: "X
    is/are/means/refers to ...", "X (...) is", "called X", or an acronym spelled out:
    "interferon-induced transmembrane (IFITM)"; else 0. The subject counts as a whole word
    only: "openapi" is not defined by "/openapi.json is registered"."""
    found = 0.0
    for match in re.finditer(rf"(?<![\w/.-]){re.escape(subject)}(?![\w/-]|\.\w)", text):
        at = match.start()
        after = text[match.end() : match.end() + 60]
        if re.match(
            r"[\"'\u201d\u2019`*]*\s*(?:\([^)]*\)\s*)?,?\s*(?:is|are|was|were|means|refers\s+to|"
            r"stands\s+for|describes|denotes|,\s*(?:a|an|the|which|that)\b)",
            after,
        ):
            opens = re.fullmatch(r"[\W_]*(?:(?:an?|the)\s+)?[\W_]*", text[:at]) is not None
            if opens:
                return 2.0
            found = 1.0
            continue
        before = text[max(0, at - 30) : at]
        if re.search(r"(?:called|named|known\s+as|termed|\()\s*$", before):
            found = 1.0
    return found


def _looks_like_heading(words: str) -> bool:
    """A short line with no sentence end, in title case or with no verb: a title, a byline,
    a label."""
    if words.endswith((".", "!", "?", ":")) or len(words.split()) > 12:
        return False
    long_words = [w for w in words.split() if len(w) > 3 and w[0].isalpha()]
    title_case = (
        bool(long_words) and sum(w[0].isupper() for w in long_words) * 3 >= len(long_words) * 2
    )
    return title_case or not _VERB_LIKE.search(words)


def unmentioned(question: str, passages: list[str]) -> set[str]:
    """The things a question names (a product, an acronym, an API: its names, not its numbers)
    that none of the passages mention. "How do I log in with Okta?" asked of documentation
    that never says Okta is not answered by it, however many other words they share.

    A name counts as mentioned when a word of the passages starts with its first five letters
    ("Grammys" and "Grammy", "Californian" and "California"), when the passages spell it with
    spaces ("Superbowl", "Super Bowl"), or when a word differs from it by a typo: questions
    are typed in a hurry. Without those, 5% of XQuAD's questions named something their own
    paragraph does not spell the same way."""
    text = "\n".join(passages).lower()
    words = set(re.findall(r"[\w.]+", text))
    squashed = re.sub(r"\s+", "", text)
    return {name for name in named(question) if not _mentioned(name, text, words, squashed)}


def named(question: str) -> set[str]:
    """The names in a question, lower case: not its numbers, not a misspelt "WHen"."""
    return {
        name
        for name in key_content(question)
        if not name[0].isdigit() and tokenize([name])[0] and not _QUESTION_WORD.match(name)
    }


def about_something_else(question: str, passages: list[str]) -> bool:
    """Whether the question names things and the passages mention none of them. Every one,
    not any one: a question names a country, the paragraph its people ("French" and
    "France"); requiring every name refused 5% of XQuAD's questions asked of their own
    paragraph, requiring none of them 0.6%."""
    names = named(question)
    return bool(names) and unmentioned(question, passages) == names


def _mentioned(name: str, text: str, words: set[str], squashed: str) -> bool:
    if name in text or name in squashed:
        return True
    stem = name[:5]
    if len(name) >= 5 and any(word.startswith(stem) for word in words):
        return True
    return len(name) >= 6 and bool(get_close_matches(name, words, n=1, cutoff=0.8))
