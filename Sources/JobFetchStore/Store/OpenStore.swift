import JobFetchCore

extension DaemonSettings {
    /// Opens the configured store: SQLite in `state_dir`, or PostgreSQL.
    /// A reader (`jobfetchctl`) gets nil when no daemon has created it yet.
    /// A reader that cannot read the password's secret file (it runs outside
    /// the service) connects without one: libpq then uses `~/.pgpass`,
    /// `PGPASSWORD` or the server's peer authentication.
    public func openStore(readOnly: Bool) throws(StoreError) -> (any JobStoring)? {
        switch store {
        case .sqlite:
            if readOnly && !FileIO.exists(databasePath) { return nil }
            let s = try JobStore(path: databasePath, readOnly: readOnly)
            return s.isUnset ? nil : s
        case .postgresql(let uri, let label):
            var conninfo: String
            do {
                conninfo = try uri.resolve(SecretFileCache())
            } catch {
                guard readOnly else { throw StoreError(code: 0, message: error.message, context: "the store's password") }
                conninfo = ConfigParser.withoutPassword(ConfigParser.placeholder(uri), mark: nil)
            }
            // Bounded waits on a database that does not answer; a name in pg_stat_activity.
            let extra = [("connect_timeout", "10"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
                         ("application_name", "jobfetch-" + (readOnly ? "ctl" : nodeName))]
            for (k, v) in extra where !conninfo.contains(k + "=") {
                conninfo += (conninfo.contains("?") ? "&" : "?") + k + "=" + v
            }
            let s = try PostgresStore(conninfo: conninfo, label: label, node: nodeName, lease: lease, readOnly: readOnly)
            return s.isUnset ? nil : s
        }
    }
}
