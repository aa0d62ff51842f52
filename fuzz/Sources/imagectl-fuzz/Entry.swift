// The entry of imagectl-fuzz. Built by scripts/fuzz.sh with -sanitize=fuzzer,address and
// -DIMAGECTL_FUZZ, libFuzzer's main runs the target $IMAGECTL_FUZZ_TARGET names. A plain build
// (swift build) is a replay tool instead: `imagectl-fuzz TARGET FILE...` runs each file through
// the target once (to reproduce a crash under the debugger), `imagectl-fuzz --list` prints the
// target names.
import Foundation

#if IMAGECTL_FUZZ
/// The target this process fuzzes; set once in LLVMFuzzerInitialize, before any input.
nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    let name = ProcessInfo.processInfo.environment["IMAGECTL_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget.all.first(where: { $0.name == name }) else {
        FileHandle.standardError.write(Data("error: IMAGECTL_FUZZ_TARGET must name one of: \(FuzzTarget.all.map(\.name).joined(separator: " "))\n".utf8))
        exit(2)
    }
    selected = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    selected!.run(bytes)
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["--list"] {
            for target in FuzzTarget.all { print(target.name) }
            return
        }
        guard let name = arguments.first, let target = FuzzTarget.all.first(where: { $0.name == name }) else {
            FileHandle.standardError.write(Data("usage: imagectl-fuzz --list | TARGET FILE...\n".utf8))
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("error: cannot read \(path)\n".utf8))
                exit(1)
            }
            target.run(Array(data))
        }
        print("\(name): \(arguments.count - 1) inputs, no crash")
    }
}
#endif
