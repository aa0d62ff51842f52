import Foundation
import Glibc

/// libnftables (Debian package libnftables1, which the nft command itself is built on), loaded
/// with dlopen on first use so that imagectl starts without it where no machine has networking.
/// In-process rather than `nft -f -`: starting nft and its five libraries cost about as much as
/// the kernel's part of a machine's rules, twice per networked start (add, then delete).
///
/// Its API is five plain C functions, so they are bound here directly; libnftables keeps global
/// state (its symbol tables, the GMP allocator hooks), so one command runs at a time per process.
final class LibNftables: @unchecked Sendable {
    private typealias New = @convention(c) (UInt32) -> OpaquePointer?
    private typealias Free = @convention(c) (OpaquePointer?) -> Void
    private typealias Buffer = @convention(c) (OpaquePointer?) -> Int32
    private typealias GetBuffer = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    private typealias Run = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Int32

    private let new: New
    private let free: Free
    private let bufferOutput: Buffer
    private let bufferError: Buffer
    private let outputBuffer: GetBuffer
    private let errorBuffer: GetBuffer
    private let run: Run
    private let lock = NSLock()

    private static let loaded: Result<LibNftables, NetworkSetupError> = load()

    /// The loaded library, or why it cannot be had.
    static func shared() throws -> LibNftables { try loaded.get() }

    private init(handle: UnsafeMutableRawPointer) throws {
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            guard let pointer = dlsym(handle, name) else {
                throw NetworkSetupError.step("use libnftables", "libnftables.so.1 lacks \(name)")
            }
            return unsafeBitCast(pointer, to: type)
        }
        new = try symbol("nft_ctx_new", as: New.self)
        free = try symbol("nft_ctx_free", as: Free.self)
        bufferOutput = try symbol("nft_ctx_buffer_output", as: Buffer.self)
        bufferError = try symbol("nft_ctx_buffer_error", as: Buffer.self)
        outputBuffer = try symbol("nft_ctx_get_output_buffer", as: GetBuffer.self)
        errorBuffer = try symbol("nft_ctx_get_error_buffer", as: GetBuffer.self)
        run = try symbol("nft_run_cmd_from_buffer", as: Run.self)
    }

    private static func load() -> Result<LibNftables, NetworkSetupError> {
        guard let handle = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL) else {
            return .failure(.missingTool("libnftables", package: "libnftables1"))
        }
        do { return .success(try LibNftables(handle: handle)) }
        catch let error as NetworkSetupError { return .failure(error) }
        catch { return .failure(.step("use libnftables", "\(error)")) }
    }

    /// Runs `commands` (nft's own syntax, one transaction) in the calling thread's network
    /// namespace. Returns what nft would print; throws with nft's error text.
    func execute(_ commands: String, for what: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        guard let context = new(0) else { throw NetworkSetupError.step(what, "libnftables could not make a context") }
        defer { free(context) }
        _ = bufferOutput(context)
        _ = bufferError(context)
        let status = run(context, commands)
        guard status == 0 else {
            let text = errorBuffer(context).map { String(cString: $0) } ?? ""
            // nft's error text repeats the command and marks the column: the first line is the why.
            var why = text.split(separator: "\n").first.map(String.init) ?? "nftables refused the change"
            if why.hasPrefix("Error: ") { why.removeFirst("Error: ".count) }
            throw NetworkSetupError.step(what, why)
        }
        return outputBuffer(context).map { String(cString: $0) } ?? ""
    }
}
