import Glibc

/// Where the config file is: `--config`, else `$JOBFETCH_CONFIG`, else the system path.
public enum ConfigLocation {
    public static let systemPath = "/etc/jobfetchd/daemon.conf"

    public static func resolve(_ option: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let env = getenv("JOBFETCH_CONFIG"), env.pointee != 0 { return String(cString: env) }
        return systemPath
    }
}
