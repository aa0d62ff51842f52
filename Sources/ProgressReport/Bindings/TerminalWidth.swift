// The one place in ProgressReport that calls C: whether a descriptor is a terminal, and how wide
// it is (TIOCGWINSZ through CShims, since Swift cannot import the ioctl's variadic signature).
import CShims
import Glibc

public enum TerminalWidth {
    /// True when `fd` is a terminal.
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// The width to draw in on `fd`, as systemd decides it: $COLUMNS when it holds a positive
    /// number (`environmentColumns`), else the terminal's own width (TIOCGWINSZ), else 80.
    public static func columns(of fd: Int32, environmentColumns: Int?) -> Int {
        if let environmentColumns, environmentColumns > 0 { return environmentColumns }
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        if img_terminal_size(fd, &rows, &columns) == 0, columns > 0 { return Int(columns) }
        return 80
    }
}
