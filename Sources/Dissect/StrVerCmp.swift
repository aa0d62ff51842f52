/// glibc's strverscmp(3) ordering, used to pick the newest of several root/usr partitions by
/// label (A/B updates). Written here because Glibc's strverscmp is a GNU extension that Swift
/// does not import reliably and labels are Swift strings.
///
/// Semantics: strings compare byte-wise until the first difference. If the difference falls in a
/// run of digits, the run decides: an integral run (not starting with 0) is larger when it has
/// more digits; a fractional run (starting with 0) compares byte-wise, except that a run with
/// more leading zeros sorts first ("000" < "00" < "01" < "010" < "09" < "0" < "1" < "9" < "10").
public func strverscmp(_ a: String, _ b: String) -> Int {
    let s1 = Array(a.utf8), s2 = Array(b.utf8)
    func at(_ s: [UInt8], _ i: Int) -> UInt8 { i < s.count ? s[i] : 0 }
    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// The longer digit run from `i` on wins; equal lengths keep the first difference.
    func compareLengths(_ i: Int, _ plain: Int) -> Int {
        var j = i
        while isDigit(at(s1, j)) && isDigit(at(s2, j)) { j += 1 }
        if isDigit(at(s1, j)) { return 1 }
        if isDigit(at(s2, j)) { return -1 }
        return plain
    }

    var i = 0
    while at(s1, i) == at(s2, i) {
        if at(s1, i) == 0 { return 0 }
        i += 1
    }
    let c1 = at(s1, i), c2 = at(s2, i)
    let plain = Int(c1) - Int(c2)

    // The digit run that contains the difference starts at `start`.
    var start = i
    while start > 0, isDigit(at(s1, start - 1)) { start -= 1 }
    let inRun1 = isDigit(c1), inRun2 = isDigit(c2)
    if start == i {
        // The difference starts a digit run: two runs not starting with 0 compare by length,
        // anything else byte-wise.
        if inRun1 && inRun2 && c1 != 0x30 && c2 != 0x30 { return compareLengths(i, plain) }
        return plain
    }

    let fractional = at(s1, start) == 0x30
    if fractional {
        // Leading zeros only so far (all common chars of the run are '0'): the side whose run
        // continues with more zeros/digits is "more fractional" and sorts first.
        let onlyZeros = (start..<i).allSatisfy { at(s1, $0) == 0x30 }
        if onlyZeros {
            if inRun1 && !inRun2 { return -1 }
            if !inRun1 && inRun2 { return 1 }
        }
        return plain
    }

    // Integral run: a digit against a non-digit means that side has the longer number.
    if inRun1 && !inRun2 { return 1 }
    if !inRun1 && inRun2 { return -1 }
    return compareLengths(i, plain)

}
