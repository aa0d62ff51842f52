/// rtnetlink numbers from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
/// <linux/if_addr.h> and <linux/veth.h>. Swift does not import those headers; the values are
/// kernel ABI and never change, so they are written out here rather than shimmed through C.
enum RTNL {
    // nlmsghdr.nlmsg_type
    static let error: UInt16 = 2          // NLMSG_ERROR
    static let done: UInt16 = 3           // NLMSG_DONE
    static let newLink: UInt16 = 16       // RTM_NEWLINK
    static let deleteLink: UInt16 = 17    // RTM_DELLINK
    static let getLink: UInt16 = 18       // RTM_GETLINK
    static let setLink: UInt16 = 19       // RTM_SETLINK
    static let newAddress: UInt16 = 20    // RTM_NEWADDR
    static let getAddress: UInt16 = 22    // RTM_GETADDR
    static let newRoute: UInt16 = 24      // RTM_NEWROUTE
    static let getRoute: UInt16 = 26      // RTM_GETROUTE
    static let newLinkProperty: UInt16 = 108  // RTM_NEWLINKPROP

    // nlmsghdr.nlmsg_flags
    static let request: UInt16 = 0x1      // NLM_F_REQUEST
    static let multi: UInt16 = 0x2        // NLM_F_MULTI
    static let ack: UInt16 = 0x4          // NLM_F_ACK
    static let dump: UInt16 = 0x300       // NLM_F_ROOT | NLM_F_MATCH
    static let exclusive: UInt16 = 0x200  // NLM_F_EXCL
    static let create: UInt16 = 0x400     // NLM_F_CREATE

    // struct ifinfomsg attributes (IFLA_*)
    static let iflaAddress: UInt16 = 1
    static let iflaIfname: UInt16 = 3
    static let iflaMTU: UInt16 = 4
    static let iflaLink: UInt16 = 5
    static let iflaMaster: UInt16 = 10
    static let iflaLinkInfo: UInt16 = 18
    static let iflaNetNSPID: UInt16 = 19
    static let iflaNetNSFD: UInt16 = 28
    static let iflaPropertyList: UInt16 = 52  // IFLA_PROP_LIST
    static let nestedFlag: UInt16 = 0x8000    // NLA_F_NESTED
    static let iflaAlternativeName: UInt16 = 53  // IFLA_ALT_IFNAME
    /// ALTIFNAMSIZ less the terminating NUL.
    static let maximumAlternativeNameLength = 127
    // IFLA_LINKINFO nested
    static let infoKind: UInt16 = 1       // IFLA_INFO_KIND
    static let infoData: UInt16 = 2       // IFLA_INFO_DATA
    static let vethPeer: UInt16 = 1       // VETH_INFO_PEER
    static let macvlanMode: UInt16 = 1    // IFLA_MACVLAN_MODE
    static let macvlanModeBridge: UInt32 = 4  // MACVLAN_MODE_BRIDGE
    static let ipvlanMode: UInt16 = 1     // IFLA_IPVLAN_MODE
    static let ipvlanModeL2: UInt16 = 0   // IPVLAN_MODE_L2

    // struct ifaddrmsg attributes (IFA_*) and flags
    static let ifaAddress: UInt16 = 1
    static let ifaLocal: UInt16 = 2
    static let ifaFlags: UInt16 = 8
    static let ifaNoDAD: UInt32 = 0x02    // IFA_F_NODAD
    static let ifaPermanent: UInt8 = 0x80 // IFA_F_PERMANENT

    // struct rtmsg attributes (RTA_*) and values
    static let rtaDestination: UInt16 = 1
    static let rtaOutputInterface: UInt16 = 4
    static let rtaGateway: UInt16 = 5
    static let rtaTable: UInt16 = 15
    static let tableMain: UInt8 = 254     // RT_TABLE_MAIN
    static let protocolBoot: UInt8 = 3    // RTPROT_BOOT, what `ip route add` uses
    static let scopeUniverse: UInt8 = 0   // RT_SCOPE_UNIVERSE
    static let scopeLink: UInt8 = 253     // RT_SCOPE_LINK
    static let typeUnicast: UInt8 = 1     // RTN_UNICAST

    // struct ifinfomsg.ifi_flags
    static let up: UInt32 = 0x1           // IFF_UP

    static let familyUnspecified: UInt8 = 0  // AF_UNSPEC
    static let familyIPv4: UInt8 = 2         // AF_INET
    static let familyIPv6: UInt8 = 10        // AF_INET6

    /// Longest interface name the kernel takes: IFNAMSIZ (16) less the terminating NUL.
    static let maximumNameLength = 15
}
