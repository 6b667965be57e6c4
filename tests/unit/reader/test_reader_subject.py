"""Document subjects, code-shaped words, procedural questions and the corpus's own questions."""

from __future__ import annotations

from reader.parse import Parsed, Token
from reader.question import question_class, question_info
from reader.sentences import Passage, sentence_features, split_sentences
from reader.spans import sentence_candidates
from reader.subject import code_words, is_code, mentions, names_a_means, qualified_name, signature_role, title_subject
from reader.synth import corpus_questions, exception_questions, module_question, signature_questions, title_question


def test_title_subject():
    assert title_subject("filecmp --- File and Directory Comparisons") == "filecmp"
    assert title_subject("curses.panel --- A panel stack extension for curses") == "curses.panel"
    assert title_subject("Super_Bowl_50") == "Super Bowl 50"
    assert title_subject("8. Errors and Exceptions — Python 3.11.2 documentation") == "Errors and Exceptions"
    assert title_subject("email: Examples") == "email"
    assert title_subject("11. Brief Tour of the Standard Library — Part II") == ""  # too long to be a name
    assert title_subject("") == ""


def test_code_shapes():
    assert code_words("Use sys.argv, deepcopy() or RobotFileParser and __init__ in Python 3.11, e.g. here") == [
        "sys.argv", "deepcopy()", "RobotFileParser", "__init__"]
    assert not is_code("3.11") and not is_code("e.g") and not is_code("Python") and not is_code("well-known")
    assert is_code("setraw(") and is_code("camelCase")


def test_mentions_whole_words_only():
    assert mentions("The filecmp module compares", "filecmp")
    assert mentions("see FILECMP.", "filecmp")
    assert not mentions("filecmpx", "filecmp") and not mentions("os.filecmp", "filecmp")
    assert not mentions("anything", "")


def test_procedural_questions_have_their_own_class():
    assert question_class("How do I compare two directories?") == "how_to"
    assert question_class("how can one read a file") == "how_to"
    assert question_class("How did the Normans conquer England?") == "how"
    assert question_class("How many people live there?") == "how_many"
    assert question_class("Whom did she marry?") == "who"
    assert question_class("Name the river.") == "other"


def _tok(text: str, word: str, start: int, pos: str, head: int, dep: str = "dep") -> Token:
    return Token(word, start, start + len(word), word.lower(), pos, "", dep, head, "", False,
                 word.lower() in {"the", "do", "i", "how", "two"}, pos == "PUNCT")


def _parse(text: str, rows: list[tuple[str, str]]) -> Parsed:
    toks, at = [], 0
    for word, pos in rows:
        at = text.index(word, at)
        toks.append(_tok(text, word, at, pos, len(toks)))
        at += len(word)
    return Parsed(text, tuple(toks))


def test_sentence_features_mark_the_subject_and_code_the_question_does_not_name():
    passages = [Passage("Compare the two directories. Use filecmp.dircmp() for that. Files differ.", "lib/filecmp",
                        title="filecmp --- File and Directory Comparisons")]
    sents = split_sentences(passages)
    feats = sentence_features("How do I compare two directories?", sents, passages, [0.9, 0.5, 0.2])
    assert "subject" not in feats[0] and "code" not in feats[0]
    assert feats[1]["subject|wh=how_to"] == 1.0 and feats[1]["code|wh=how_to"] == 1.0
    assert "subject" not in feats[2]
    asked = sentence_features("What does filecmp.dircmp() compare?", sents, passages, [0.9, 0.5, 0.2])
    assert "subject" not in asked[1] and "code" not in asked[1]  # named in the question: no news


def test_span_features_mark_the_subject():
    sentence = _parse("The filecmp module compares files.", [("The", "DET"), ("filecmp", "PROPN"), ("module", "NOUN"),
                                                               ("compares", "VERB"), ("files", "NOUN"), (".", "PUNCT")])
    question = question_info(_parse("How do I compare files?", [("How", "SCONJ"), ("do", "AUX"), ("I", "PRON"),
                                                                ("compare", "VERB"), ("files", "NOUN"), ("?", "PUNCT")]))
    spans, feats = sentence_candidates(question, sentence, subject="filecmp")
    by_text = {sentence.span_text(i, j): f for (i, j), f in zip(spans, feats)}
    assert by_text["filecmp"]["is_subject|wh=how_to"] == 1.0
    assert "is_subject" not in by_text["module"]
    _spans, plain = sentence_candidates(question, sentence)
    assert not any("is_subject" in f for f in plain)


def _is_verb(description: str) -> bool:
    return description.split()[0] in {"Dump", "Change", "Compare"}


def test_title_questions():
    q = title_question("lib/faulthandler", "faulthandler --- Dump the Python traceback", _is_verb)
    assert q is not None and q.question == "How do I dump the Python traceback?" and q.answers == ("faulthandler",)
    q = title_question("lib/filecmp", "filecmp --- File and Directory Comparisons", _is_verb)  # no verb: which module
    assert q is not None and q.question == "Which module provides file and Directory Comparisons?"
    assert title_question("x", "Errors and Exceptions — Python docs", _is_verb) is None  # not one name
    assert title_question("x", "faulthandler", _is_verb) is None  # no description


def test_signature_questions():
    text = ("tty --- Terminal control functions\n\nsetraw(fd, when=termios.TCSAFLUSH)\n\n"
            "Change the mode of the file descriptor fd to raw. More.\n\ntty.getmode(fd)\n\n"
            "Return the mode of fd.\n\nnot_a_signature\n\nChange nothing here.")
    qs = list(signature_questions("lib/tty", text, _is_verb))
    assert [(q.question, q.answers) for q in qs] == [
        ("How do I change the mode of the file descriptor fd to raw?", ("setraw",)),
        ("How do I get the mode of fd?", ("tty.getmode", "getmode"))]  # the function, never the module


def test_corpus_questions_are_unique():
    docs = [("a", "faulthandler --- Dump the Python traceback", "x"),
            ("b", "other --- Dump the Python traceback", "x")]
    assert [q.doc_id for q in corpus_questions(docs, _is_verb)] == ["a"]


def test_which_module_questions():
    q = title_question("lib/xml.sax", "xml.sax --- Support for SAX2 parsers", _is_verb)
    assert q is not None and q.question == "Which module provides support for SAX2 parsers?" and q.answers == ("xml.sax",)
    q = title_question("lib/xdrlib", "xdrlib --- implements (a subset of) Sun XDR", _is_verb)
    assert q is not None and q.question == "Which module implements (a subset of) Sun XDR?"
    assert title_question("x", "enc --- Codec for 'MAPPINGS/CP037.TXT'", _is_verb) is None  # not one plain phrase
    assert title_question("x", "codecs --- codecs -- Python Codec Registry", _is_verb) is None  # names itself
    text = "atexit --- Exit handlers\n\nThe atexit module defines functions to register cleanup functions. More."
    q = module_question("lib/atexit", "atexit --- Exit handlers", text)
    assert q is not None and q.question == "Which module defines functions to register cleanup functions?"
    assert q.answers == ("atexit",) and q.kind == "module"
    assert module_question("lib/x", "x --- X", "The y module defines other things here.") is None  # another module


def test_exception_questions():
    text = ("urllib.error --- Exceptions\n\nSameFileError\n\nRaised when source and destination are the same file."
            "\n\nOther\n\nRaised by (e.g. several."
            "\n\nerr.ParseError(msg)\n\nThis exception is raised if the input cannot be parsed at all.")
    assert [(q.question, q.answers) for q in exception_questions("lib/x", text)] == [
        ("Which exception is raised when source and destination are the same file?", ("SameFileError",)),
        ("Which exception is raised if the input cannot be parsed at all?", ("err.ParseError", "ParseError"))]


def test_qualified_name_of_a_signature_member():
    sent = "spawn(argv[, master_read[, stdin_read]])\nSpawn a process, and connect its controlling terminal."
    assert qualified_name("spawn", sent, 0, "pty") == "pty.spawn"
    assert qualified_name("stdin_read", sent, sent.index("stdin_read"), "pty") is None  # an argument, not the name
    assert qualified_name("Spawn", "Spawn a process now.", 0, "pty") is None  # prose, no signature
    assert (qualified_name("ContentTooShortError", "ContentTooShortError\nRaised when ...", 0, "urllib.error")
            == "urllib.error.ContentTooShortError")  # a lone code-shaped name line
    assert qualified_name("Example", "Example\nThe example below shows ...", 0, "copyreg") is None  # a heading
    assert qualified_name("TimeoutError", "TimeoutError\nA deprecated alias.", 0, "Exceptions") is None  # not a module
    assert qualified_name("spawn", sent, 0, "Super Bowl 50") is None
    use = "set_property(TARGET tgt PROPERTY CXX_STANDARD 11)\nwith a compiler which does not support it."
    assert qualified_name("set_property", use, 0, "CXX_STANDARD") is None  # a property's page: a call using it
    assert qualified_name("pty.spawn", "pty.spawn(argv)\nSpawn.", 0, "pty") is None  # already qualified
    subject = title_subject("py_compile --- Compile Python source files", keep_underscores=True)
    assert qualified_name("compile", "compile(file)\nCompile.", 0, subject) == "py_compile.compile"
    assert qualified_name("scheduler.enterabs", "scheduler.enterabs(time)\nSchedule.", 0, "sched") == "sched.scheduler.enterabs"


def test_signature_roles():
    sent = "spawn(argv[, master_read])\nSpawn a process."
    assert signature_role(sent, 0, 5) == "name"
    assert signature_role(sent, sent.index("master_read"), sent.index("master_read") + 11) == "arg"
    assert signature_role(sent, sent.index("Spawn"), sent.index("Spawn") + 5) is None  # the description
    assert signature_role("Spawn a process.", 0, 5) is None  # no signature line
    assert signature_role("NannyNag\nRaised by process_tokens().", 0, 8) == "name"  # a lone code-shaped name


def test_names_a_means():
    sent = "Therefore, list.sort() sorts the list in place, and range() counts."
    assert names_a_means("list.sort", sent, sent.index("list.sort"), "")  # code-shaped
    assert names_a_means("range", sent, sent.index("range"), "")  # a call
    assert names_a_means("foreach", "Evaluate a group of commands.", 0, "foreach")  # the page's subject
    assert not names_a_means("place", sent, sent.index("place"), "")
    assert not names_a_means("typically", "Files are typically installed.", 10, "find_package")
