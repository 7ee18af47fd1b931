"""The compiled (numba) kernels of `curate.minhash`: shingle hashing and one-permutation MinHash
(`_minhash_kernel`, with the inlined `_roll_start` / `_roll` / `_fmix64` it shares with `_count_kernel`), the
band hashes (`_composite_kernel`, `_band_top_kernel`), slot agreement (`_agreement_kernel`) and the ASCII
normalizer (`_normalize_ascii_kernel`). Moved out of `curate.minhash`, which holds their numpy reference twins
(`_shingle_hashes`, `_drop_common`, `_minhash_numpy`, `_band_hashes`; tests compare them) and calls them; the
kernels are what they were there (`cache=True`, same arguments). Also the candidate pairs of one LSH band over the
slot-agreement floor (`_band_pairs_kernel`, with `_agree` / `_run_end` / `_lowest`) and the band's order it takes
(`_band_order_kernel`), which `curate.near` calls; their numpy references are `near._band_codes` then the floor,
and the lexsort (tests compare them).

Without numba `_numba` is None and no kernel is defined (numba is a dependency; `curate.minhash` stays importable
and falls back to the numpy versions).
"""

from __future__ import annotations

import numpy as np

try:  # the numpy versions in curate.minhash compute the same values (tests compare them)
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a dependency; this keeps the module importable without it
    _numba = None

if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _fmix64(h):  # pragma: no cover - compiled
        """murmur3's fmix64: the mixer every shingle hash goes through (`_shingle_hashes`)."""
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        return h ^ (h >> np.uint64(33))

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _roll_start(cps, lo, n):  # pragma: no cover - compiled
        """(the polynomial hash of the first n code points from cps[lo], POLY^(n-1)) for `_roll`."""
        poly = np.uint64(0x100000001B3)
        top = np.uint64(1)
        for k in range(n - 1):
            top = top * poly
        h = np.uint64(0)
        for k in range(n):
            h = h * poly + np.uint64(cps[lo + k]) + np.uint64(1)
        return h, top

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _roll(h, cps, lo, i, n, top):  # pragma: no cover - compiled
        """The polynomial hash of the shingle at lo + i from the one at lo + i - 1 (the same value as the sum
        formula of `_shingle_hashes`, mod 2^64)."""
        poly = np.uint64(0x100000001B3)
        one = np.uint64(1)
        return (h - (np.uint64(cps[lo + i - 1]) + one) * top) * poly + np.uint64(cps[lo + i + n - 1]) + one


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _minhash_kernel(cps, offsets, ngram, probes, stop, out):  # pragma: no cover - compiled
        """The compiled twin of `_shingle_hashes` + `_drop_common` + `_minhash_numpy`, for a packed batch.

        `stop` is the common-shingle table (a power-of-two size; size 1 means no filtering).
        """
        P = out.shape[1]
        smask = np.uint64(stop.shape[0] - 1)
        use_stop = stop.shape[0] > 1
        T = probes.shape[1]
        s32 = np.uint64(32)
        lo32 = np.uint64(0xFFFFFFFF)
        uP = np.uint64(P)
        mins = np.empty(P, dtype=np.uint32)
        filled = np.empty(P, dtype=np.uint8)
        for r in range(offsets.shape[0] - 1):
            lo = offsets[r]
            ln = offsets[r + 1] - lo
            n = min(ngram, ln)
            m = ln - n + 1
            if ln == 0:  # the empty text has one shingle, the code point 0: (0 + 1)
                h0, top = np.uint64(1), np.uint64(1)
                m = 1
            else:
                h0, top = _roll_start(cps, lo, n)
            for attempt in range(2):  # attempt 1 (no filtering) only when every shingle was common
                filtering = use_stop and attempt == 0
                for j in range(P):
                    mins[j] = np.uint32(0xFFFFFFFF)
                    filled[j] = 0
                any_kept = np.uint8(0)
                h = h0
                for i in range(m):
                    if i > 0:
                        h = _roll(h, cps, lo, i, n, top)
                    x = _fmix64(h)
                    # branch-free (the compares are unpredictable; ~1.6x faster than `if ...: continue` and a
                    # conditional store): a common shingle competes as 0xFFFFFFFF (never lowers a minimum) and
                    # fills nothing
                    j = ((x >> s32) * uP) >> s32
                    v = np.uint32(x & lo32)
                    if filtering:
                        keep = np.uint8(1) - np.uint8(stop[x & smask] != 0)
                        v = v | (np.uint32(keep) - np.uint32(1))
                    else:
                        keep = np.uint8(1)
                    mj = mins[j]
                    mins[j] = min(mj, v)
                    filled[j] |= keep
                    any_kept |= keep
                if any_kept or not filtering:
                    break
            for j in range(P):
                if filled[j]:
                    out[r, j] = mins[j]
                    continue
                done = False
                for t in range(T):
                    k = probes[j, t]
                    if filled[k]:
                        out[r, j] = mins[k]
                        done = True
                        break
                if not done:
                    for d in range(1, P):
                        k = (j + d) % P
                        if filled[k]:
                            out[r, j] = mins[k]
                            break


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _count_kernel(cps, offsets, ngram, counts):  # pragma: no cover - compiled
        """Add 1 to counts[hash & mask] for every shingle of every text (document frequency, roughly)."""
        mask = np.uint64(counts.shape[0] - 1)
        for r in range(offsets.shape[0] - 1):
            lo = offsets[r]
            ln = offsets[r + 1] - lo
            if ln == 0:
                continue
            n = min(ngram, ln)
            h, top = _roll_start(cps, lo, n)
            for i in range(ln - n + 1):
                if i > 0:
                    h = _roll(h, cps, lo, i, n, top)
                counts[_fmix64(h) & mask] += 1


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _band_hash(sig, i, b, rows):  # pragma: no cover - compiled
        """`_band_hashes(sig)[i, b]`: FNV over the band's rows, then one xorshift (both kernels below)."""
        h = np.uint64(0xCBF29CE484222325)
        for r in range(rows):
            h = (h ^ np.uint64(sig[i, b * rows + r])) * np.uint64(0x100000001B3)
        return h ^ (h >> np.uint64(29))

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _composite_kernel(sig, bands, rows, out):  # pragma: no cover - compiled
        """The compiled twin of `_band_hashes(sig) << 6 | band` for (n, num_perm) signatures."""
        s6 = np.uint64(6)
        for i in range(sig.shape[0]):
            for b in range(bands):
                out[i, b] = (_band_hash(sig, i, b, rows) << s6) | np.uint64(b)

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _band_top_kernel(sig, bands, rows, out):  # pragma: no cover - compiled
        """The compiled twin of `_band_hashes(sig) >> 32` into a uint32 (n, bands) `out`."""
        s32 = np.uint64(32)
        for i in range(sig.shape[0]):
            for b in range(bands):
                out[i, b] = np.uint32(_band_hash(sig, i, b, rows) >> s32)


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _agreement_kernel(digest, a, b, out):  # pragma: no cover - compiled
        """out[k] = how many slots of digest[a[k]] and digest[b[k]] are equal."""
        P = digest.shape[1]
        for k in range(a.shape[0]):
            x = a[k]
            y = b[k]
            c = 0
            for j in range(P):
                c += digest[x, j] == digest[y, j]
            out[k] = c


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _normalize_ascii_kernel(src, offsets, dst, dst_off, space_t, lower_t):  # pragma: no cover - compiled
        """`normalize_text` of packed ASCII texts: lowered, runs of whitespace made one space, none at either end.

        Branch-free: every byte writes a space slot and a char slot and advances over what it keeps (a slot not
        kept is overwritten by the next write, or lies past the text's end offset). `dst` as long as `src`."""
        w = 0
        for r in range(offsets.shape[0] - 1):
            dst_off[r] = w
            started = 0  # a kept char was written
            pending = 0  # whitespace seen after a kept char, not yet written
            for p in range(offsets[r], offsets[r + 1]):
                c = src[p]
                ws = space_t[c]
                keep = 1 - ws
                dst[w] = 32
                w += pending & keep
                dst[w] = lower_t[c]
                w += keep
                pending = (pending | started) & ws
                started |= keep
        dst_off[offsets.shape[0] - 1] = w


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _agree(words, x, y):  # pragma: no cover - compiled
        """How many slots of rows x and y agree, over digest rows seen as uint64 words (8 slots a word, at most 255
        words). SWAR, ~3x the byte loop: a byte of v = a ^ b is 0 where the slots agree; ~(((v & 0x7f..) + 0x7f..)
        | v | 0x7f..) has the top bit of each 0 byte alone set, shifted down to count 1 in its byte lane, and the
        lanes are summed at the end."""
        m7 = np.uint64(0x7F7F7F7F7F7F7F7F)
        acc = np.uint64(0)
        for j in range(words.shape[1]):
            v = words[x, j] ^ words[y, j]
            acc += ~(((v & m7) + m7) | v | m7) >> np.uint64(7)
        m16 = np.uint64(0x00FF00FF00FF00FF)
        pairs = (acc & m16) + ((acc >> np.uint64(8)) & m16)  # 4 lanes of 16 bits
        return np.int64((pairs * np.uint64(0x0001000100010001)) >> np.uint64(48))

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _run_end(key, s):  # pragma: no cover - compiled
        """The end of the run of keys equal to key[s] that starts at s."""
        e = s + 1
        while e < key.shape[0] and key[e] == key[s]:
            e += 1
        return e

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _lowest(order, s, e, window, low):  # pragma: no cover - compiled
        """How many of low[:window] now hold the lowest of order[s:e], ascending (a bucket's first members)."""
        nlow = 0
        for q in range(s, e):
            y = order[q]
            if nlow < window or (window > 0 and y < low[window - 1]):
                k = min(nlow, window - 1)
                while k > 0 and low[k - 1] > y:
                    low[k] = low[k - 1]
                    k -= 1
                low[k] = y
                nlow = min(nlow + 1, window)
        return nlow

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _parts_ok(x, y, items, pflags, pbands, sk_len, sk_crc):  # pragma: no cover - compiled
        """`near.PartsTest` of records x and y (dedup's `parts_meet`): items[x], items[y] are their rows of the
        part arrays; a part long in both (its bit clear in pflags of both) needs one equal band key of
        pbands[., part]; a part short in both (sk_len >= 0 in both) needs equal token counts and at most one
        sk_crc piece different. sk_len of one row only: no sketch test."""
        a = items[x]
        b = items[y]
        either = pflags[a] | pflags[b]
        for part in range(2):
            if (either & (part + 1)) == 0:
                meet = False
                for k in range(pbands.shape[2]):
                    if pbands[a, part, k] == pbands[b, part, k]:
                        meet = True
                        break
                if not meet:
                    return False
            if sk_len.shape[0] > 1:
                la = sk_len[a, part]
                lb = sk_len[b, part]
                if la >= 0 and lb >= 0:
                    if la != lb:
                        return False
                    differ = 0
                    for k in range(sk_crc.shape[2]):
                        if sk_crc[a, part, k] != sk_crc[b, part, k]:
                            differ += 1
                    if differ > 1:
                        return False
        return True

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _chars_ok(a, b, ccounts, clen, need):  # pragma: no cover - compiled
        """`near_chars.CharBound` of rows a and b of `ccounts` ((m, parts, buckets) uint8 character counts) and
        `clen` ((m, parts) lengths, -1: the part is not tested): each part both rows test has a bucket at 255 in
        both, or 2 * the sum of the minima >= need * (len a + len b)."""
        for p in range(ccounts.shape[1]):
            la = clen[a, p]
            lb = clen[b, p]
            if la < 0 or lb < 0:
                continue
            s = 0
            full = False
            for k in range(ccounts.shape[2]):
                u = ccounts[a, p, k]
                v = ccounts[b, p, k]
                s += min(u, v)
                full |= (u == 255) & (v == 255)
            if not full and 2.0 * s + 1e-6 * (la + lb) < need * (la + lb):
                return False
        return True

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _band_pairs_kernel(
        order,
        key,
        small,
        window,
        words,
        floor,
        exempt,
        cross,
        parts,
        items,
        pflags,
        pbands,
        sk_len,
        sk_crc,
        crow,
        ccounts,
        clen,
        need,
        p0,
        out,
    ):  # pragma: no cover
        """The pair codes (min * n + max) one band of `near.candidate_pairs_counted` emits, those over the floor
        (`near.SlotFloor`: at least `floor` slots agree, `_agree` over `words`, the digest rows as uint64 words, or
        `exempt` holds one of the two), with `cross` >= 0 only those of one record below `cross` and one not (the
        floor's `cross`: the leakage check's training x held-out pairs; no slot is compared for the others), and,
        with `parts`, that pass `_parts_ok` (the floor's `near.PartsTest`), and, where `exempt` let a pair through
        and both its records have a row of `ccounts` (`crow` >= 0; `crow` of one entry: no such test), that pass
        `_chars_ok` at `need` (the floor's `near_chars.CharBound`), from sorted position `p0` on, into `out`: (codes written, the position to go on from; n: the band is
        done). `order`: the band's sort of the n records, `key` their band keys in that order.

        The pairs of the numpy reference, each as often: a bucket (a run of equal keys) of up to `small` members
        pairs every two; in a larger one each member meets its `window` next members in `order` and those of the
        bucket's `window` lowest indices below it. Each member's pairs are emitted at once (at most max(small - 1,
        2 * window) of them), so the kernel stops at a member boundary while `out` has room for one more member's;
        `out` must hold at least that many. A bucket's lowest indices are found again when the kernel goes on
        inside it."""
        n = order.shape[0]
        cap = out.shape[0]
        per = max(small - 1, 2 * window)
        chars = crow.shape[0] > 1
        nn = np.int64(n)
        low = np.empty(max(window, 1), dtype=np.int64)  # the bucket's lowest indices, ascending
        w = 0
        s = e = p0  # the bucket holding position p: [s, e)
        nlow = 0
        if p0 < n:
            while s > 0 and key[s - 1] == key[p0]:
                s -= 1
            e = _run_end(key, s)
            nlow = _lowest(order, s, e, window, low) if e - s > small else 0
        p = p0
        while p < n:
            if p == e:
                s, e = p, _run_end(key, p)
                nlow = _lowest(order, s, e, window, low) if e - s > small else 0
            if w + per > cap:
                return w, p
            x = order[p]
            last = e if e - s <= small else min(e, p + window + 1)
            for q in range(p + 1, last):
                y = order[q]
                if cross >= 0 and (x < cross) == (y < cross):
                    continue
                if (
                    (_agree(words, x, y) >= floor) | exempt[x] | exempt[y]
                ):  # (no branch before the count: 1.7x)
                    if parts and not _parts_ok(x, y, items, pflags, pbands, sk_len, sk_crc):
                        continue
                    if (
                        chars
                        and (exempt[x] | exempt[y])
                        and min(crow[x], crow[y]) >= 0
                        and not _chars_ok(crow[x], crow[y], ccounts, clen, need)
                    ):
                        continue
                    out[w] = min(x, y) * nn + max(x, y)
                    w += 1
            if e - s > small:
                for t in range(nlow):
                    y = low[t]
                    if y >= x:
                        break
                    if cross >= 0 and (x < cross) == (y < cross):
                        continue
                    if (_agree(words, y, x) >= floor) | exempt[x] | exempt[y]:
                        if parts and not _parts_ok(y, x, items, pflags, pbands, sk_len, sk_crc):
                            continue
                        if (
                            chars
                            and (exempt[x] | exempt[y])
                            and min(crow[x], crow[y]) >= 0
                            and not _chars_ok(crow[y], crow[x], ccounts, clen, need)
                        ):
                            continue
                        out[w] = y * nn + x
                        w += 1
            p += 1
        return w, n


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _band_order_kernel(col32, band):  # pragma: no cover - compiled
        """(order, key): `np.lexsort((idx, c3, c2, c1, c0))` of the records, c_k = col32[:, (band + k) % bands] (by
        the band's key, then the next three bands' keys, then index), and c0 in that order. An LSD radix sort: each
        key, least significant first, in three stable passes of 11 bits (a pass whose digits are all equal skipped);
        ~5x numpy's lexsort of the strided columns, and without the GIL."""
        n, bands = col32.shape
        order = np.arange(n)
        kc = np.empty(n, dtype=np.uint32)
        o2 = np.empty(n, dtype=np.int64)
        k2 = np.empty(n, dtype=np.uint32)
        cnt = np.empty(2048, dtype=np.int64)
        for k in range(3, -1, -1):
            c = (band + k) % bands
            for i in range(n):
                kc[i] = col32[order[i], c]
            for shift in (0, 11, 22):
                cnt[:] = 0
                for i in range(n):
                    cnt[(kc[i] >> shift) & 2047] += 1
                total = 0
                one = False
                for d in range(2048):
                    x = cnt[d]
                    cnt[d] = total
                    total += x
                    one |= x == n
                if one:
                    continue
                for i in range(n):
                    d = (kc[i] >> shift) & 2047
                    j = cnt[d]
                    cnt[d] = j + 1
                    o2[j] = order[i]
                    k2[j] = kc[i]
                order, o2 = o2, order
                kc, k2 = k2, kc
        return order, kc
