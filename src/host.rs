//! Who and where a command runs, as recorded in snapshots and key files.

/// This machine's host name, or `unknown`.
pub fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .unwrap_or_else(|_| "unknown".into())
}

/// The user running the command, from the environment, or `unknown`.
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
