/// A failed netlink operation: what was being done, to which link, and the kernel's answer.
public struct NetlinkError: Error, CustomStringConvertible, Sendable, Equatable {
    /// "create veth", "move link into namespace", "add address 10.0.0.1/28" ...
    public var operation: String
    /// The interface the operation was about, when there is one.
    public var link: String?
    /// The errno from the kernel (positive); 0 for a malformed reply.
    public var errno: Int32
    /// The kernel's extended acknowledgement text (NETLINK_EXT_ACK), when it sent one.
    public var kernelMessage: String?

    public init(operation: String, link: String? = nil, errno: Int32, kernelMessage: String? = nil) {
        self.operation = operation
        self.link = link
        self.errno = errno
        self.kernelMessage = kernelMessage
    }

    public var description: String {
        var text = "cannot \(operation)"
        if let link { text += " (\(link))" }
        text += ": " + (errno == 0 ? "malformed netlink reply" : ErrorText.describe(errno))
        if let kernelMessage, !kernelMessage.isEmpty { text += " (\(kernelMessage))" }
        return text
    }
}
