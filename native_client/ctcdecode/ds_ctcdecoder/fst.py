"""The vocabulary FST of a Mozilla scorer: OpenFST's ``ConstFst<StdArc>`` binary format, read and written.

Mozilla's decoder (DeepSpeech 0.9 ``Scorer::load_trie``) reads it with ``fst::ConstFst<StdArc>::Read``
right after the scorer header, and walks it with an input-label ``SortedMatcher``: the automaton must be
deterministic and the arcs of each state sorted by label. ``write_const_fst`` writes a minimal
deterministic acyclic automaton (Daciuk et al.'s incremental construction over the sorted label
sequences) in the bytes ``ConstFst::Write`` produces with ``FstWriteOptions::align = true`` (OpenFST
1.6.7, as Mozilla's ``Scorer::save_dictionary``). All integers little-endian::

    int32  2125659606 (kFstMagicNumber)
    int32  5, b"const"      (FST type)
    int32  8, b"standard"   (arc type: StdArc, tropical float weights)
    int32  1                (version: kAlignedFileVersion; 2 is the unaligned layout)
    int32  4                (flags: FstHeader::IS_ALIGNED; no symbol tables)
    uint64 properties       (what OpenFST's ComputeProperties finds, | kExpanded; see properties())
    int64  start state (0), int64 number of states, int64 number of arcs
    zero bytes up to a multiple of 16 of the position in the FILE (not of the FST)
    states, 20 bytes each: float32 final weight (0.0 final, +inf not final), uint32 index of its
        first arc, uint32 number of arcs, uint32 input epsilons (0), uint32 output epsilons (0)
    zero bytes up to a multiple of 16 of the position in the file
    arcs, 16 bytes each, grouped by state, ascending label within a state: int32 ilabel,
        int32 olabel (= ilabel), float32 weight (0.0), int32 next state

States are numbered in topological order from the start state 0, so every arc leads to a higher
state (OpenFST's kTopSorted holds).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

FST_MAGIC = 2125659606
ALIGNED_VERSION = 1  # ConstFstImpl::kAlignedFileVersion
UNALIGNED_VERSION = 2  # ConstFstImpl::kFileVersion
IS_ALIGNED = 0x4  # FstHeader::IS_ALIGNED; 0x1 and 0x2 announce input/output symbol tables
ALIGNMENT = 16  # MappedFile::kArchAlignment
INF = float("inf")

# OpenFST's property bits (fst/properties.h)
K_EXPANDED = 0x1
K_ACCEPTOR, K_NOT_ACCEPTOR = 0x10000, 0x20000
K_I_DETERMINISTIC, K_NON_I_DETERMINISTIC = 0x40000, 0x80000
K_O_DETERMINISTIC, K_NON_O_DETERMINISTIC = 0x100000, 0x200000
K_EPSILONS, K_NO_EPSILONS = 0x400000, 0x800000
K_I_EPSILONS, K_NO_I_EPSILONS = 0x1000000, 0x2000000
K_O_EPSILONS, K_NO_O_EPSILONS = 0x4000000, 0x8000000
K_I_LABEL_SORTED, K_NOT_I_LABEL_SORTED = 0x10000000, 0x20000000
K_O_LABEL_SORTED, K_NOT_O_LABEL_SORTED = 0x40000000, 0x80000000
K_WEIGHTED, K_UNWEIGHTED = 0x100000000, 0x200000000
K_CYCLIC, K_ACYCLIC = 0x400000000, 0x800000000
K_INITIAL_CYCLIC, K_INITIAL_ACYCLIC = 0x1000000000, 0x2000000000
K_TOP_SORTED, K_NOT_TOP_SORTED = 0x4000000000, 0x8000000000
K_ACCESSIBLE, K_NOT_ACCESSIBLE = 0x10000000000, 0x20000000000
K_CO_ACCESSIBLE, K_NOT_CO_ACCESSIBLE = 0x40000000000, 0x80000000000
K_STRING, K_NOT_STRING = 0x100000000000, 0x200000000000
K_WEIGHTED_CYCLES, K_UNWEIGHTED_CYCLES = 0x400000000000, 0x800000000000


class FstError(ValueError):
    pass


@dataclass(frozen=True)
class Dfa:
    """An acceptor: ``arcs[s]`` lists (label, next state) of state s, by ascending label when built here."""
    finals: tuple[bool, ...]
    arcs: tuple[tuple[tuple[int, int], ...], ...]
    start: int = 0  # built here: always 0
    properties: int = 0  # as stored in a file read back; 0 for one built here

    @property
    def num_arcs(self) -> int:
        return sum(len(a) for a in self.arcs)


def minimal_dfa(sequences) -> Dfa:
    """The minimal deterministic automaton accepting exactly ``sequences`` (of positive labels)."""
    words = sorted(set(tuple(s) for s in sequences))
    if not words:
        raise FstError("no word to put in the vocabulary FST")
    if any(label <= 0 for word in words for label in word):
        raise FstError("FST labels must be positive (0 is OpenFST's epsilon)")
    finals, arcs, register = [False], [{}], {}
    path, previous = [0], ()
    for word in words:
        common = 0
        while common < min(len(word), len(previous)) and word[common] == previous[common]:
            common += 1
        _register_suffix(finals, arcs, register, path, previous, common)
        for label in word[common:]:
            finals.append(False)
            arcs.append({})
            arcs[path[-1]][label] = len(arcs) - 1
            path.append(len(arcs) - 1)
        finals[path[-1]] = True
        previous = word
    _register_suffix(finals, arcs, register, path, previous, 0)
    return _renumber(finals, arcs)


def _register_suffix(finals, arcs, register, path, word, keep: int) -> None:
    """Daciuk's replace_or_register on the states of ``word`` past its first ``keep`` labels.

    Deepest first, so every child is already the register's representative of its language; a state
    equal to a registered one (same finality, same arcs) is replaced by it in its parent.
    """
    for depth in range(len(word), keep, -1):
        state, parent = path[depth], path[depth - 1]
        # arcs were added by ascending label (sorted words), and replacing keeps the order
        signature = (finals[state], tuple(arcs[state].items()))
        same = register.get(signature)
        if same is None:
            register[signature] = state
        else:
            arcs[parent][word[depth - 1]] = same
            arcs[state] = None  # dropped: unreachable from now on
    del path[keep + 1:]


def _renumber(finals, arcs) -> Dfa:
    """The reachable states in topological order (reverse DFS postorder), the start state first."""
    order, seen, stack = [], {0}, [(0, iter(sorted(arcs[0].items())))]
    while stack:
        state, children = stack[-1]
        for _, child in children:
            if child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(arcs[child].items()))))
                break
        else:
            order.append(state)
            stack.pop()
    order.reverse()
    number = {old: new for new, old in enumerate(order)}
    return Dfa(tuple(finals[s] for s in order),
               tuple(tuple((label, number[child]) for label, child in sorted(arcs[s].items()))
                     for s in order))


def properties(dfa: Dfa) -> int:
    """The property word OpenFST stores for ``dfa`` as a ConstFst: ComputeProperties' rules, | kExpanded.

    Every pair of kCopyProperties is decided (one bit of each pair set), as OpenFST does when it
    converts the minimized VectorFst to a ConstFst and writes it.
    """
    labels = [label for arcs in dfa.arcs for label, _ in arcs]
    sorted_ = all(a[0] < b[0] for arcs in dfa.arcs for a, b in zip(arcs, arcs[1:]))
    deterministic = all(len({label for label, _ in arcs}) == len(arcs) for arcs in dfa.arcs)
    top_sorted = all(nxt > s for s, arcs in enumerate(dfa.arcs) for _, nxt in arcs)
    props = K_EXPANDED | K_ACCEPTOR | K_UNWEIGHTED | K_UNWEIGHTED_CYCLES
    if deterministic:
        props |= K_I_DETERMINISTIC | K_O_DETERMINISTIC
    else:
        props |= K_NON_I_DETERMINISTIC | K_NON_O_DETERMINISTIC
    props |= K_I_LABEL_SORTED | K_O_LABEL_SORTED if sorted_ else K_NOT_I_LABEL_SORTED | K_NOT_O_LABEL_SORTED
    if any(label == 0 for label in labels):
        props |= K_EPSILONS | K_I_EPSILONS | K_O_EPSILONS
    else:
        props |= K_NO_EPSILONS | K_NO_I_EPSILONS | K_NO_O_EPSILONS
    props |= _graph_properties(dfa, top_sorted)
    props |= K_STRING if _is_string(dfa) else K_NOT_STRING
    return props


def _graph_properties(dfa: Dfa, top_sorted: bool) -> int:
    """Cycles, accessibility, co-accessibility and topological order (what SccVisitor decides)."""
    if not top_sorted or dfa.start != 0:  # the automata written here are always numbered so
        raise FstError("vocabulary FST states are not in topological order from state 0")
    reach, stack = {0}, [0]
    while stack:
        for _, nxt in dfa.arcs[stack.pop()]:
            if nxt not in reach:
                reach.add(nxt)
                stack.append(nxt)
    coreach = [False] * len(dfa.finals)
    for s in range(len(dfa.finals) - 1, -1, -1):  # topological order: successors come later
        coreach[s] = dfa.finals[s] or any(coreach[nxt] for _, nxt in dfa.arcs[s])
    props = K_ACYCLIC | K_INITIAL_ACYCLIC | K_TOP_SORTED
    props |= K_ACCESSIBLE if len(reach) == len(dfa.finals) else K_NOT_ACCESSIBLE
    props |= K_CO_ACCESSIBLE if all(coreach) else K_NOT_CO_ACCESSIBLE
    return props


def _is_string(dfa: Dfa) -> bool:
    """OpenFST's kString: one path 0 -> 1 -> ... -> n-1, only its last state final."""
    if dfa.start != 0:
        return False
    for s, arcs in enumerate(dfa.arcs):
        if any(nxt != s + 1 for _, nxt in arcs) or any(dfa.finals[:s]):
            return False
        if not dfa.finals[s] and len(arcs) != 1:
            return False
    return True


def const_fst_bytes(dfa: Dfa, offset: int) -> bytes:
    """``dfa`` as OpenFST's aligned ConstFst, to be written at byte ``offset`` of its file."""
    out = bytearray(struct.pack("<i", FST_MAGIC))
    for name in (b"const", b"standard"):
        out += struct.pack("<i", len(name)) + name
    out += struct.pack("<iiQqqq", ALIGNED_VERSION, IS_ALIGNED, properties(dfa), dfa.start, len(dfa.finals),
                       dfa.num_arcs)
    out += bytes(-(offset + len(out)) % ALIGNMENT)
    first = 0
    for final, arcs in zip(dfa.finals, dfa.arcs):
        out += struct.pack("<fIIII", 0.0 if final else INF, first, len(arcs), 0, 0)
        first += len(arcs)
    out += bytes(-(offset + len(out)) % ALIGNMENT)
    for arcs in dfa.arcs:
        for label, nxt in arcs:
            out += struct.pack("<iifi", label, label, 0.0, nxt)
    return bytes(out)


def read_const_fst(data, pos: int) -> tuple[Dfa, int]:
    """The acceptor stored at ``pos`` of ``data`` (a whole file) and the offset just past it."""
    (magic,) = struct.unpack_from("<i", data, pos)
    if magic != FST_MAGIC:
        raise FstError("no OpenFST FST where the vocabulary should start")
    pos += 4
    names = []
    for _ in range(2):  # FST type, arc type
        (n,) = struct.unpack_from("<i", data, pos)
        names.append(bytes(data[pos + 4:pos + 4 + n]).decode("ascii", errors="replace"))
        pos += 4 + n
    version, flags, props, start, n_states, n_arcs = struct.unpack_from("<iiQqqq", data, pos)
    pos += 40
    if names != ["const", "standard"]:
        raise FstError(f"vocabulary FST of type {names[0]}/{names[1]}, expected const/standard")
    if flags & 0x3:
        raise FstError("vocabulary FST with symbol tables is not supported")
    if version not in (ALIGNED_VERSION, UNALIGNED_VERSION) or n_states < 0 or n_arcs < 0:
        raise FstError(f"unsupported ConstFst (format {version}, {n_states} states, {n_arcs} arcs)")
    aligned = version == ALIGNED_VERSION or flags & IS_ALIGNED
    if aligned:
        pos += -pos % ALIGNMENT
    states_end = pos + 20 * n_states
    arcs_at = states_end + (-states_end % ALIGNMENT if aligned else 0)
    end = arcs_at + 16 * n_arcs
    if end > len(data):
        raise FstError("vocabulary FST runs past the end of the file")
    states = list(struct.iter_unpack("<fIIII", data[pos:states_end]))
    arcs = list(struct.iter_unpack("<iifi", data[arcs_at:end]))
    if n_states and not 0 <= start < n_states:
        raise FstError(f"vocabulary FST starts at state {start} of {n_states}")
    dfa = Dfa(tuple(final != INF for final, *_ in states),
              tuple(tuple((il, nxt) for il, _, _, nxt in arcs[first:first + count])
                    for _, first, count, _, _ in states), start, props)
    return dfa, end


def fst_words(dfa: Dfa) -> list[tuple[int, ...]]:
    """The label sequences accepted by an acyclic acceptor (one read by read_const_fst)."""
    if not dfa.finals:
        return []
    words, stack = [], [(dfa.start, ())]
    while stack:
        state, prefix = stack.pop()
        if dfa.finals[state]:
            words.append(prefix)
        if len(prefix) > len(dfa.finals):
            raise FstError("the vocabulary FST has a cycle")
        for label, nxt in dfa.arcs[state]:
            stack.append((nxt, prefix + (label,)))
    return words
