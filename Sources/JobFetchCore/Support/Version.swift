/// The version jobfetchd and jobfetchctl report (and send as `User-Agent`).
public enum Version {
    public static let string = "0.1.0"
}
