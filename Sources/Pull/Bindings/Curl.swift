// libcurl's easy interface, the one place in Pull that talks to it.
//
// Why libcurl rather than AsyncHTTPClient (a decision recorded in Sources/Pull/README.md too):
// - systemd-pull itself uses libcurl, so redirects, TLS and error behaviour match the tool we replace;
// - its synchronous write callback feeds our threaded decompress/write pipeline directly, with
//   bounded memory and no bridging out of NIO's event loop;
// - it does file:// natively (AsyncHTTPClient does not);
// - redirects, timeouts, TLS verification, Range and conditional requests are all plain options;
// - it adds no build time (AsyncHTTPClient + NIO add 3-5 minutes to every cold CI build on 2 cores).
import CCurl
import Foundation

/// Once per process, before any handle (curl_global_init is not thread-safe on its own).
private let curlGlobalInit: Bool = {
    img_curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
}()

/// One transfer over http, https or file, performed synchronously on the calling thread.
///
/// TLS peer and host verification stay on (libcurl's defaults, never switched off); redirects are
/// followed (at most 10, and only to http/https: a server cannot redirect us to a local file);
/// a connection that moves less than 1 byte/s for 60 s is given up.
final class CurlTransfer {
    /// The status line and headers of the last response received (after redirects).
    struct Response: Sendable {
        /// The HTTP status; for file:// (which has none) 200, or 206 when a range was asked for.
        var status: Int = 0
        /// Header names in lower case; the last value wins.
        var headers: [String: String] = [:]

        func header(_ name: String) -> String? { headers[name] }
    }

    struct Failure: Swift.Error, Sendable {
        /// libcurl's CURLcode.
        var code: Int32
        var message: String

        /// The transfer stopped early or never connected: worth another try.
        var isTransient: Bool {
            [CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_COULDNT_CONNECT,
             CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM,
             CURLE_COULDNT_RESOLVE_HOST, CURLE_SSL_CONNECT_ERROR].map { Int32($0.rawValue) }.contains(code)
        }
        /// No connection was made at all (refused, unreachable, name not resolved): retrying
        /// at once would only repeat it.
        var isConnectionFailure: Bool {
            [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY].map { Int32($0.rawValue) }.contains(code)
        }
        var isPartialFile: Bool { code == Int32(CURLE_PARTIAL_FILE.rawValue) }
        var isFileNotFound: Bool { code == Int32(CURLE_FILE_COULDNT_READ_FILE.rawValue) }
        var isTLSVerification: Bool {
            [CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE].map { Int32($0.rawValue) }.contains(code)
        }
        /// Aborted by one of our callbacks (the reason is kept by the caller).
        var isAbortedByCallback: Bool {
            [CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK].map { Int32($0.rawValue) }.contains(code)
        }
    }

    let url: String
    /// Extra request headers ("Name: value").
    var headers: [String] = []
    /// Ask for the bytes from this offset on (Range for http, a resume offset for file://).
    var rangeStart: UInt64 = 0
    /// Refuse a response announcing more bytes than this (CURLOPT_MAXFILESIZE_LARGE).
    var maximumSize: UInt64 = UInt64(Int64.max)

    /// The request: GET (the default), HEAD (no body), POST with an empty body, or PUT of
    /// `uploadSize` bytes handed out by `onUpload` (the registry upload protocol needs these).
    enum Method: Sendable { case get, head, post, put }
    var method: Method = .get
    var uploadSize: UInt64 = 0
    /// Fills the buffer with the next bytes to upload; 0 at the end. Throwing aborts.
    var onUpload: (UnsafeMutableRawBufferPointer) -> Int = { _ in 0 }

    /// Called once the final response's headers are in (not for redirects); false aborts.
    var onHeaders: (Response) -> Bool = { _ in true }
    /// Called with each piece of the body of the final response; false aborts.
    var onData: (UnsafeRawBufferPointer) -> Bool = { _ in true }
    /// Called regularly (also while nothing arrives); false aborts. Arguments: bytes expected in
    /// this response (0 if unknown), bytes received so far in this response.
    var onProgress: (UInt64, UInt64) -> Bool = { _, _ in true }

    private(set) var response = Response()
    private var headersDone = false
    private var pendingHeaders: [String: String] = [:]
    private var pendingStatus = 0
    /// libcurl keeps this pointer (CURLOPT_ERRORBUFFER) for the whole transfer: it is allocated
    /// for the life of the object rather than borrowed from an array.
    private let errorBuffer: UnsafeMutablePointer<CChar> = {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        buffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        return buffer
    }()

    init(url: String) { self.url = url }

    deinit { errorBuffer.deallocate() }

    var isFile: Bool { url.lowercased().hasPrefix("file:") }

    /// Runs the transfer. Throws `Failure` when libcurl reports an error (including an abort by a
    /// callback); an HTTP error status is not a failure here, the caller looks at `response`.
    func perform() throws {
        if let loadError = img_curl_load_error() {
            throw Failure(code: Int32(CURLE_FAILED_INIT.rawValue), message: String(cString: loadError))
        }
        guard curlGlobalInit, let handle = img_curl_easy_init() else {
            throw Failure(code: Int32(CURLE_FAILED_INIT.rawValue), message: "cannot initialise libcurl")
        }
        defer { img_curl_easy_cleanup(handle) }
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { img_curl_slist_free_all(headerList) }
        for header in headers { headerList = img_curl_slist_append(headerList, header) }

        let context = Unmanaged.passUnretained(self).toOpaque()
        let checks: [CURLcode] = [
                img_curl_setopt_string(handle, CURLOPT_URL, url),
                img_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https,file"),
                img_curl_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"),
                img_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 1),
                img_curl_setopt_long(handle, CURLOPT_MAXREDIRS, 10),
                img_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, 30),
                img_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1),
                img_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, 60),
                img_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1),
                img_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1),
                img_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2),
                img_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 512 << 10),
                img_curl_setopt_string(handle, CURLOPT_USERAGENT, "imagectl-pull"),
                img_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer),
                img_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, headerList.map { UnsafeMutableRawPointer($0) }),
                img_curl_setopt_offset(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(min(maximumSize, UInt64(Int64.max)))),
                // file:// takes a resume offset. http(s) gets a plain Range header instead: with
                // CURLOPT_RESUME_FROM, libcurl itself handles a server that ignores the range and
                // answers 200 with the whole file, failing the transfer or, when the announced
                // length equals the offset, ending it as "already downloaded" with no body, after
                // the caller has seen a 200 and restarted from zero (issue 16). The caller decides.
                img_curl_setopt_offset(handle, CURLOPT_RESUME_FROM_LARGE, curl_off_t(isFile ? rangeStart : 0)),
                img_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context),
                img_curl_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION, curlHeaderCallback),
                img_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context),
                img_curl_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteCallback),
                img_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0),
                img_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context),
                img_curl_setopt_xferinfo_callback(handle, curlProgressCallback),
        ]
        var methodChecks: [CURLcode] = []
        switch method {
        case .get: break
        case .head: methodChecks.append(img_curl_setopt_long(handle, CURLOPT_NOBODY, 1))
        case .post:
            methodChecks.append(img_curl_setopt_long(handle, CURLOPT_POST, 1))
            methodChecks.append(img_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, 0))
        case .put:
            methodChecks.append(img_curl_setopt_long(handle, CURLOPT_UPLOAD, 1))
            methodChecks.append(img_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(uploadSize)))
            methodChecks.append(img_curl_setopt_pointer(handle, CURLOPT_READDATA, context))
            methodChecks.append(img_curl_setopt_data_callback(handle, CURLOPT_READFUNCTION, curlReadCallback))
        }
        if let bad = methodChecks.first(where: { $0 != CURLE_OK }) {
            throw Failure(code: Int32(bad.rawValue), message: String(cString: img_curl_easy_strerror(bad)))
        }
        if rangeStart > 0 && !isFile {
            let setRange = img_curl_setopt_string(handle, CURLOPT_RANGE, "\(rangeStart)-")
            if setRange != CURLE_OK {
                throw Failure(code: Int32(setRange.rawValue), message: String(cString: img_curl_easy_strerror(setRange)))
            }
        }
        if let bad = checks.first(where: { $0 != CURLE_OK }) {
            throw Failure(code: Int32(bad.rawValue), message: String(cString: img_curl_easy_strerror(bad)))
        }
        let code = img_curl_easy_perform(handle)
        if !headersDone { finishHeaders() }
        if code != CURLE_OK {
            let detail = String(cString: errorBuffer)
            throw Failure(code: Int32(code.rawValue),
                          message: detail.isEmpty ? String(cString: img_curl_easy_strerror(code)) : detail)
        }
    }

    // MARK: callbacks (called by libcurl on this thread)

    fileprivate func header(_ line: UnsafeRawBufferPointer) -> Bool {
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("HTTP/") {
            // A new response (after a redirect or a 100 Continue): start over.
            pendingHeaders = [:]
            let parts = text.split(separator: " ", maxSplits: 2)
            pendingStatus = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
            return true
        }
        if text.isEmpty {
            // End of one response's headers: the final one unless it redirects or continues.
            if pendingStatus == 100 || (300..<400).contains(pendingStatus) && pendingStatus != 304 { return true }
            return finishHeaders()
        }
        if let colon = text.firstIndex(of: ":") {
            let name = text[..<colon].lowercased()
            let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            pendingHeaders[name] = value
        }
        return true
    }

    @discardableResult
    private func finishHeaders() -> Bool {
        guard !headersDone else { return true }
        headersDone = true
        var status = pendingStatus
        if isFile || status == 0 { status = rangeStart > 0 ? 206 : 200 }
        response = Response(status: status, headers: pendingHeaders)
        return onHeaders(response)
    }

    fileprivate func data(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // file:// sends no header block: its first data settles the response.
        if !headersDone && !finishHeaders() { return false }
        return onData(bytes)
    }

    fileprivate func upload(_ buffer: UnsafeMutableRawBufferPointer) -> Int { onUpload(buffer) }

    fileprivate func progress(total: Int64, now: Int64) -> Bool {
        onProgress(UInt64(max(0, total)), UInt64(max(0, now)))
    }
}

private func curlHeaderCallback(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    return transfer.header(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
}

private func curlWriteCallback(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    return transfer.data(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
}

private func curlReadCallback(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let data, let context else { return Int(CURL_READFUNC_ABORT) }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let n = transfer.upload(UnsafeMutableRawBufferPointer(start: data, count: size * count))
    return n < 0 ? Int(CURL_READFUNC_ABORT) : n
}

private func curlProgressCallback(_ context: UnsafeMutableRawPointer?, _ total: curl_off_t, _ now: curl_off_t,
                                  _ uploadTotal: curl_off_t, _ uploadNow: curl_off_t) -> Int32 {
    guard let context else { return 1 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    return transfer.progress(total: Int64(total), now: Int64(now)) ? 0 : 1
}

extension Puller {
    /// Why libcurl cannot be loaded (it is dlopen()ed on first use), or nil when it can:
    /// `imagectl --version` reports it.
    public static var libcurlUnavailableReason: String? {
        img_curl_load_error().map { String(cString: $0) }
    }
}
