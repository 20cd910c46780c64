# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mecab-ko's best path over a compiled mecab-ko-dic, read straight from the dictionary files.

The same lattice as mecab-ko 0.996-ko-0.9.2 (dictionary lookup, unknown-word grouping, the left-space penalty,
Viterbi with its tie order), without building mecab's node objects or formatting its output: one call gives
the best path as dictionary token indexes, which the nori analyzer maps to cached terms. The tests check it node
for node against python-mecab-ko, which stays the fallback where this module is not compiled.
"""

import mmap
from pathlib import Path

from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, strlen

cdef extern from *:
    """
    typedef struct { unsigned short lc, rc, posid; short wcost; unsigned int feature, compound; } mp_token;
    typedef struct { int base; unsigned int check; } mp_unit;
    """
    ctypedef struct mp_token:
        uint16_t lc
        uint16_t rc
        uint16_t posid
        int16_t wcost
        uint32_t feature
        uint32_t compound
    ctypedef struct mp_unit:
        int32_t base
        uint32_t check

cdef struct mp_node:
    int64_t cost
    int32_t prev
    int32_t enext
    int32_t key  # sys.dic token index, or -(1 + unk.dic token index)
    int32_t begin  # byte offset of the surface, after any leading spaces
    int32_t length
    int32_t rlength  # length with the leading spaces
    uint16_t lc
    uint16_t rc
    int32_t penalty

cdef enum:
    MAX_RESULTS = 512  # mecab's Allocator results_size
    MAX_LOOKUP = 65535  # mecab looks at most this many bytes ahead
    DEFAULT_MAX_GROUPING = 24
    NO_NODE = -1

cdef inline uint32_t _type(uint32_t info) noexcept nogil:
    return info & 0x3FFFF

cdef inline uint32_t _default_type(uint32_t info) noexcept nogil:
    return (info >> 18) & 0xFF

cdef inline uint32_t _length(uint32_t info) noexcept nogil:
    return (info >> 26) & 0xF

cdef inline uint32_t _group(uint32_t info) noexcept nogil:
    return (info >> 30) & 1

cdef inline uint32_t _invoke(uint32_t info) noexcept nogil:
    return info >> 31


cdef void* _grown(void* block, Py_ssize_t count, size_t item) except NULL:
    """`block` resized to `count` items (the old one stays valid, and is freed later, if this fails)."""
    cdef void* more = realloc(block, count * item)
    if more == NULL:
        raise MemoryError
    return more


cdef class _Dic:
    """One compiled dictionary file (sys.dic or unk.dic): double array, tokens, features."""

    cdef object _map
    cdef const unsigned char[:] _view
    cdef const mp_unit* units
    cdef const mp_token* tokens
    cdef const char* features
    cdef uint32_t token_count

    def __init__(self, path):
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = self._map
        cdef const unsigned char* p = &self._view[0]
        cdef const uint32_t* head = <const uint32_t*>p
        if len(self._map) < 100 or (head[0] ^ 0xEF718F77) != len(self._map) or head[1] != 102:
            raise ValueError(f"{path}: not a compiled mecab dictionary of the version mecab 0.996 writes")
        cdef uint32_t dsize = head[6], tsize = head[7]
        p += 40 + 32
        self.units = <const mp_unit*>p
        self.tokens = <const mp_token*>(p + dsize)
        self.token_count = tsize // sizeof(mp_token)
        self.features = <const char*>(p + dsize + tsize)

    cdef inline int32_t value_at(self, int32_t b) noexcept nogil:
        """The value a key ending at double-array state `b` maps to (token index << 8 | count), or -1."""
        cdef int32_t v = self.units[<uint32_t>b].base
        if <uint32_t>b == self.units[<uint32_t>b].check and v < 0:
            return -v - 1
        return -1

    cdef inline int32_t next_state(self, int32_t b, unsigned char byte) noexcept nogil:
        """The state after `byte`, or -1 where no key continues that way."""
        cdef uint32_t p = <uint32_t>b + byte + 1
        if <uint32_t>b == self.units[p].check:
            return self.units[p].base
        return -1

    cdef inline int prefix_search(
        self, const unsigned char* key, size_t n, int32_t* values, int32_t* lengths
    ) noexcept nogil:
        """Darts' commonPrefixSearch: the values of every key that is a prefix of `key[:n]`, shortest first."""
        cdef int32_t b = self.units[0].base, v
        cdef int num = 0
        cdef size_t i
        for i in range(n + 1):
            v = self.value_at(b)
            if v >= 0:
                if num < MAX_RESULTS:
                    values[num] = v
                    lengths[num] = <int32_t>i
                num += 1
            if i == n:
                break
            b = self.next_state(b, key[i])
            if b < 0:
                break
        return num

    cdef int32_t exact(self, bytes key):
        cdef const unsigned char* k = key
        cdef int32_t b = self.units[0].base
        cdef Py_ssize_t i
        for i in range(len(key)):
            b = self.next_state(b, k[i])
            if b < 0:
                return -1
        return self.value_at(b)

    cdef str feature(self, uint32_t token):
        cdef const char* text = self.features + self.tokens[token].feature
        return text[:strlen(text)].decode("utf-8", "replace")


cdef class MecabPath:
    """`best_path(utf8)`: the token keys of mecab-ko's best path for one text (see `mp_node.key`)."""

    cdef _Dic sys_dic
    cdef _Dic unk_dic
    cdef object _maps
    cdef const unsigned char[:] _matrix_view
    cdef const unsigned char[:] _char_view
    cdef const int16_t* matrix
    cdef uint32_t lsize
    cdef const uint32_t* char_map
    cdef uint32_t space
    cdef int32_t unk_start[256]
    cdef int32_t unk_size[256]
    cdef int32_t* penalty  # by posid
    cdef size_t max_grouping
    # per-parse buffers, reused
    cdef mp_node* nodes
    cdef Py_ssize_t node_cap
    cdef Py_ssize_t node_count
    cdef int32_t* end_head
    cdef Py_ssize_t end_cap
    cdef int32_t* path
    cdef Py_ssize_t path_len
    cdef uint32_t* lc_seen
    cdef int32_t* lc_best
    cdef int64_t* lc_cost
    cdef uint32_t stamp
    cdef int32_t* left_node
    cdef int64_t* left_cost
    cdef uint16_t* left_rc
    cdef Py_ssize_t left_cap

    def __cinit__(self):
        self.nodes = NULL
        self.end_head = NULL
        self.path = NULL
        self.penalty = NULL
        self.lc_seen = NULL
        self.lc_best = NULL
        self.lc_cost = NULL
        self.left_node = NULL
        self.left_cost = NULL
        self.left_rc = NULL
        self.left_cap = 0

    def __init__(self, dicdir):
        dicdir = Path(dicdir)
        self.sys_dic = _Dic(dicdir / "sys.dic")
        self.unk_dic = _Dic(dicdir / "unk.dic")
        settings = _dicrc(dicdir / "dicrc")
        self._maps = []
        matrix = self._open(dicdir / "matrix.bin")
        self._matrix_view = matrix
        self.lsize = (<const uint16_t*>&self._matrix_view[0])[0]
        if len(matrix) != 4 + 2 * self.lsize * (<const uint16_t*>&self._matrix_view[0])[1]:
            raise ValueError(f"{dicdir / 'matrix.bin'}: unexpected size")
        self.matrix = (<const int16_t*>&self._matrix_view[0]) + 2
        chars = self._open(dicdir / "char.bin")
        self._char_view = chars
        cdef uint32_t categories = (<const uint32_t*>&self._char_view[0])[0]
        if len(chars) != 4 + 32 * categories + 4 * 0xFFFF or categories > 256:
            raise ValueError(f"{dicdir / 'char.bin'}: unexpected size")
        self.char_map = <const uint32_t*>(&self._char_view[0] + 4 + 32 * categories)
        cdef uint32_t i
        cdef int32_t found
        for i in range(categories):
            name = bytes(self._char_view[4 + 32 * i : 4 + 32 * (i + 1)]).split(b"\0", 1)[0]
            found = self.unk_dic.exact(name)
            if found < 0:
                raise ValueError(f"{dicdir / 'unk.dic'}: no entry for character category {name!r}")
            self.unk_start[i] = found >> 8
            self.unk_size[i] = found & 0xFF
        self.space = self.char_map[0x20]
        self.max_grouping = int(settings.get("max-grouping-size", 0) or 0) or DEFAULT_MAX_GROUPING
        self.penalty = <int32_t*>malloc(65536 * sizeof(int32_t))
        self.lc_seen = <uint32_t*>malloc(65536 * sizeof(uint32_t))
        self.lc_best = <int32_t*>malloc(65536 * sizeof(int32_t))
        self.lc_cost = <int64_t*>malloc(65536 * sizeof(int64_t))
        if not (self.penalty and self.lc_seen and self.lc_best and self.lc_cost):
            raise MemoryError
        for i in range(65536):
            self.penalty[i] = 0
            self.lc_seen[i] = 0
        self.stamp = 0
        factors = [int(x, 0) for x in settings.get("left-space-penalty-factor", "").split(",") if x.strip()]
        for posid, cost in reversed(list(zip(factors[0::2], factors[1::2]))):  # mecab takes the first match
            self.penalty[posid & 0xFFFF] = cost

    def __dealloc__(self):
        free(self.nodes)
        free(self.end_head)
        free(self.path)
        free(self.penalty)
        free(self.lc_seen)
        free(self.lc_best)
        free(self.lc_cost)
        free(self.left_node)
        free(self.left_cost)
        free(self.left_rc)

    def _open(self, path):
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(m)
        return m

    cdef inline uint32_t char_info(self, const unsigned char* p, const unsigned char* end, size_t* mblen) noexcept nogil:
        cdef size_t n = end - p
        cdef uint32_t c = p[0], t
        if c < 0x80:
            mblen[0] = 1
            t = c
        elif n >= 2 and (c & 0xE0) == 0xC0:
            mblen[0] = 2
            t = ((c & 0x1F) << 6) | (p[1] & 0x3F)
        elif n >= 3 and (c & 0xF0) == 0xE0:
            mblen[0] = 3
            t = (((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F)) & 0xFFFF
        elif n >= 4 and (c & 0xF8) == 0xF0:
            mblen[0] = 4
            t = 0
        elif n >= 5 and (c & 0xFC) == 0xF8:
            mblen[0] = 5
            t = 0
        elif n >= 6 and (c & 0xFE) == 0xFC:
            mblen[0] = 6
            t = 0
        else:
            mblen[0] = 1
            t = 0
        if t >= 0xFFFF:  # past the table mecab reads
            t = 0
        return self.char_map[t]

    cdef inline const unsigned char* seek(self, const unsigned char* p, const unsigned char* end, uint32_t c,
                                          uint32_t* fail, size_t* mblen, size_t* clen) noexcept nogil:
        """mecab's seekToOtherType: past the chars that share a category with the one before."""
        clen[0] = 0
        while p != end:
            fail[0] = self.char_info(p, end, mblen)
            if not (_type(c) & _type(fail[0])):
                break
            p += mblen[0]
            clen[0] += 1
            c = fail[0]
        return p

    cdef int grow_nodes(self) except -1:
        cdef Py_ssize_t cap = self.node_cap * 2 if self.node_cap else 4096
        self.nodes = <mp_node*>_grown(self.nodes, cap, sizeof(mp_node))
        self.node_cap = cap
        return 0

    cdef int grow_left(self) except -1:
        cdef Py_ssize_t cap = self.left_cap * 2 if self.left_cap else 256
        self.left_node = <int32_t*>_grown(self.left_node, cap, sizeof(int32_t))
        self.left_cost = <int64_t*>_grown(self.left_cost, cap, sizeof(int64_t))
        self.left_rc = <uint16_t*>_grown(self.left_rc, cap, sizeof(uint16_t))
        self.left_cap = cap
        return 0

    cdef inline int add(self, const mp_token* tok, int32_t key, Py_ssize_t begin, Py_ssize_t length,
                        Py_ssize_t rlength) except -1:
        if self.node_count == self.node_cap:
            self.grow_nodes()
        cdef mp_node* node = &self.nodes[self.node_count]
        self.node_count += 1
        node.key = key
        node.begin = <int32_t>begin
        node.length = <int32_t>length
        node.rlength = <int32_t>rlength
        node.lc = tok.lc
        node.rc = tok.rc
        node.penalty = tok.wcost
        if rlength != length:
            node.penalty += self.penalty[tok.posid]
        return 0

    cdef int add_unknown(self, uint32_t cinfo, const unsigned char* buf, const unsigned char* begin,
                         const unsigned char* begin2, const unsigned char* begin3) except -1:
        cdef uint32_t kind = _default_type(cinfo)
        cdef int32_t k, start = self.unk_start[kind]
        for k in range(self.unk_size[kind]):
            self.add(&self.unk_dic.tokens[start + k], -1 - (start + k), begin2 - buf, begin3 - begin2,
                     begin3 - begin)
        return 0

    cdef int lookup(self, const unsigned char* buf, Py_ssize_t pos, Py_ssize_t n) except -1:
        """mecab-ko's Tokenizer::lookup (not partial): nodes starting at `pos`, in creation order."""
        cdef const unsigned char* begin = buf + pos
        cdef const unsigned char* end = buf + n
        if n - pos >= MAX_LOOKUP:
            end = begin + MAX_LOOKUP
        cdef uint32_t cinfo = 0, fail = 0
        cdef size_t mblen = 0, clen = 0, key_len
        cdef const unsigned char* begin2 = self.seek(begin, end, self.space, &cinfo, &mblen, &clen)
        cdef int32_t values[MAX_RESULTS]
        cdef int32_t lengths[MAX_RESULTS]
        key_len = end - begin2
        if key_len == 0:
            key_len = strlen(<const char*>begin2)
        cdef int found = self.sys_dic.prefix_search(begin2, key_len, values, lengths)
        if found > MAX_RESULTS:
            found = MAX_RESULTS
        cdef int i, j
        cdef Py_ssize_t first = self.node_count
        for i in range(found):
            for j in range(values[i] & 0xFF):
                self.add(&self.sys_dic.tokens[(values[i] >> 8) + j], (values[i] >> 8) + j, begin2 - buf,
                         lengths[i], begin2 - begin + lengths[i])
        if self.node_count > first and not _invoke(cinfo):
            return 0
        cdef const unsigned char* begin3 = begin2 + mblen
        cdef const unsigned char* group_begin3 = NULL
        cdef const unsigned char* tmp
        if begin3 > end:
            self.add_unknown(cinfo, buf, begin, begin2, begin3)
            if self.node_count > first:
                return 0
        if _group(cinfo):
            tmp = begin3
            begin3 = self.seek(begin3, end, cinfo, &fail, &mblen, &clen)
            if clen <= self.max_grouping:
                self.add_unknown(cinfo, buf, begin, begin2, begin3)
            group_begin3 = begin3
            begin3 = tmp
        cdef uint32_t length = _length(cinfo), k
        for k in range(1, length + 1):
            if begin3 > end:
                break
            if begin3 == group_begin3:
                continue
            self.add_unknown(cinfo, buf, begin, begin2, begin3)
            if not (_type(cinfo) & _type(self.char_info(begin3, end, &mblen))):
                break
            begin3 += mblen
        if self.node_count == first:
            self.add_unknown(cinfo, buf, begin, begin2, begin3)
        return 0

    cdef int viterbi(self, const unsigned char* buf, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos, r, first, x, i, left_count
        cdef int32_t l, best
        cdef int64_t best_cost, cost
        cdef mp_node* rn
        cdef const int16_t* column
        cdef uint32_t lsize = self.lsize
        if n + 1 > self.end_cap:
            free(self.end_head)
            free(self.path)
            self.end_cap = max(n + 1, 1024)
            self.end_head = <int32_t*>malloc(self.end_cap * sizeof(int32_t))
            self.path = <int32_t*>malloc(self.end_cap * sizeof(int32_t))
            if self.end_head == NULL or self.path == NULL:
                self.end_cap = 0
                raise MemoryError
        for pos in range(n + 1):
            self.end_head[pos] = NO_NODE
        self.node_count = 0
        if self.node_cap == 0:
            self.grow_nodes()
        rn = &self.nodes[0]  # BOS
        rn.cost = 0
        rn.prev = NO_NODE
        rn.enext = NO_NODE
        rn.rc = 0
        rn.key = 0
        self.node_count = 1
        self.end_head[0] = 0
        for pos in range(n):
            if self.end_head[pos] == NO_NODE:
                continue
            # the nodes ending here, in mecab's order (newest first), in flat arrays for the inner loop
            left_count = 0
            l = self.end_head[pos]
            while l != NO_NODE:
                if left_count == self.left_cap:
                    self.grow_left()
                self.left_node[left_count] = l
                self.left_cost[left_count] = self.nodes[l].cost
                self.left_rc[left_count] = self.nodes[l].rc
                left_count += 1
                l = self.nodes[l].enext
            first = self.node_count
            self.lookup(buf, pos, n)
            self.stamp += 1
            if self.stamp == 0:  # wrapped: forget every stamp
                for x in range(65536):
                    self.lc_seen[x] = 0
                self.stamp = 1
            # mecab links each new node in front of the last: it connects them newest first
            for r in range(self.node_count - 1, first - 1, -1):
                rn = &self.nodes[r]
                if self.lc_seen[rn.lc] == self.stamp:  # same left context at this position: same best left
                    best = self.lc_best[rn.lc]
                    best_cost = self.lc_cost[rn.lc]
                else:
                    best = NO_NODE
                    best_cost = 2147483647
                    column = self.matrix + <Py_ssize_t>lsize * rn.lc
                    for i in range(left_count):
                        cost = self.left_cost[i] + column[self.left_rc[i]]
                        if cost < best_cost:
                            best = i
                            best_cost = cost
                    if best != NO_NODE:
                        best = self.left_node[best]
                    self.lc_seen[rn.lc] = self.stamp
                    self.lc_best[rn.lc] = best
                    self.lc_cost[rn.lc] = best_cost
                if best == NO_NODE:
                    raise ValueError("mecab lattice: no path (text too long)")
                rn.prev = best
                rn.cost = best_cost + rn.penalty
                x = pos + rn.rlength
                if x <= n:
                    rn.enext = self.end_head[x]
                    self.end_head[x] = <int32_t>r
        # EOS: left context 0, no cost, connected where the last nodes end
        pos = n
        while pos >= 0 and self.end_head[pos] == NO_NODE:
            pos -= 1
        best = NO_NODE
        best_cost = 2147483647
        l = self.end_head[pos]
        while l != NO_NODE:
            cost = self.nodes[l].cost + self.matrix[self.nodes[l].rc]
            if cost < best_cost:
                best = l
                best_cost = cost
            l = self.nodes[l].enext
        self.path_len = 0
        while best > 0:
            self.path[self.path_len] = best
            self.path_len += 1
            best = self.nodes[best].prev
        return 0

    cdef inline mp_node* path_node(self, Py_ssize_t i) noexcept nogil:
        """Node i of the last best path, counted from its start (the path is stored from its end)."""
        return &self.nodes[self.path[self.path_len - 1 - i]]

    @property
    def token_count(self):
        """How many dictionary keys there are (keys 0 .. token_count - 1)."""
        return self.sys_dic.token_count

    cdef int parse(self, const unsigned char[::1] text) except -1:
        cdef Py_ssize_t n = text.shape[0], i
        if n == 0:
            self.path_len = 0
            return 0
        # mecab reads one byte past a text's end in places: give it the NUL that C strings have
        cdef unsigned char* buf = <unsigned char*>malloc(n + 8)
        if buf == NULL:
            raise MemoryError
        memcpy(buf, &text[0], n)
        for i in range(8):
            buf[n + i] = 0
        try:
            self.viterbi(buf, n)
        finally:
            free(buf)
        return 0

    def best_path(self, const unsigned char[::1] text not None):
        """Keys of the best path's nodes, first to last (empty for an empty text)."""
        self.parse(text)
        return self.last_keys()

    def last_keys(self):
        """Keys of the last best path's nodes, first to last."""
        cdef Py_ssize_t i
        keys = [None] * self.path_len
        for i in range(self.path_len):
            keys[i] = self.path_node(i).key
        return keys

    def cached_fields(self, const unsigned char[::1] text not None, list by_key not None, dict standalone not None,
                      Py_ssize_t sets):
        """Parse `text` and join the cached fragments of its nodes into `sets` strings, or return None where a
        node is not cached (then `last_keys` and `unknown_nodes` tell the caller what to fill).

        `by_key[key]`: the fragments (a tuple of `sets` strings) of dictionary entry `key`, or None.
        `standalone[(key, surface, next)]`: those of an unknown word in that context (see `unknown_nodes`)."""
        self.parse(text)
        cdef Py_ssize_t i, j
        cdef mp_node* node
        cdef object item
        cdef tuple fragments
        cdef list part
        if len(by_key) < self.sys_dic.token_count:
            raise ValueError("by_key must have one slot per dictionary key")
        cdef list parts = [[] for _ in range(sets)]
        for i in range(self.path_len):
            node = self.path_node(i)
            if node.key >= 0:
                item = by_key[node.key]
            else:
                item = standalone.get(self.unknown_context(text, i))
            if item is None:
                return None
            fragments = <tuple>item
            for j in range(sets):
                part = <list>parts[j]
                part.append(fragments[j])
        return tuple(["".join(part).rstrip(" ") for part in parts])

    def spans(self):
        """(begin, length, rlength) in bytes of each node of the last best path."""
        cdef Py_ssize_t i
        cdef mp_node* node
        out = [None] * self.path_len
        for i in range(self.path_len):
            node = self.path_node(i)
            out[i] = (node.begin, node.length, node.rlength)
        return out

    cdef tuple unknown_context(self, const unsigned char[::1] text, Py_ssize_t i):
        """(key, surface, next) of node i of the last best path, an unknown word: `next` is the surface of the
        node after it where that node touches it (no space between), else b"" (nothing can join)."""
        cdef mp_node* node = self.path_node(i)
        cdef mp_node* after
        following = b""
        if i < self.path_len - 1:
            after = self.path_node(i + 1)
            if after.length == after.rlength:
                following = bytes(text[after.begin : after.begin + after.length])
        return (node.key, bytes(text[node.begin : node.begin + node.length]), following)

    def unknown_nodes(self, const unsigned char[::1] text not None):
        """(index, context) of each unknown word of the last best path of `text` (see `unknown_context`)."""
        cdef Py_ssize_t i
        return [
            (i, self.unknown_context(text, i))
            for i in range(self.path_len)
            if self.path_node(i).key < 0
        ]

    cdef const mp_token* token(self, int key) except NULL:
        if 0 <= key < <int>self.sys_dic.token_count:
            return &self.sys_dic.tokens[key]
        if 0 < -key <= <int>self.unk_dic.token_count:
            return &self.unk_dic.tokens[-1 - key]
        raise IndexError(f"no dictionary entry has key {key}")

    def feature(self, int key):
        """mecab's feature string for a key."""
        self.token(key)
        if key >= 0:
            return self.sys_dic.feature(key)
        return self.unk_dic.feature(-1 - key)

    def entry(self, int key):
        """(left id, right id, word cost) of a dictionary key."""
        cdef const mp_token* tok = self.token(key)
        return tok.lc, tok.rc, tok.wcost

    def homographs(self, bytes surface):
        """Keys of every dictionary entry spelled `surface`, in dictionary order."""
        cdef int32_t found = self.sys_dic.exact(surface)
        if found < 0:
            return []
        return list(range(found >> 8, (found >> 8) + (found & 0xFF)))


def _dicrc(path):
    settings = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith((";", "#")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip()
    return settings
