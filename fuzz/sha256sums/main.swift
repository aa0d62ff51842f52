// libFuzzer target: the SHA256SUMS / .sha256 parser of pull on arbitrary bytes. Built by
// scripts/fuzz.sh with Sources/Pull/{Checksums,PullError}.swift; any trap is a crash.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = count > 0 ? Array(UnsafeRawBufferPointer(start: start, count: count)) : []
    let file = ChecksumFile(name: "SHA256SUMS", contents: bytes)
    for name in ["disk.raw.xz", "", "SHA256SUMS", "*x"] {
        _ = try? file.digest(for: name)
        _ = try? file.optionalDigest(for: name)
    }
    return 0
}
