//! Facts about processes, from `/proc`.

use std::collections::BTreeSet;

/// `(ppid, state, starttime)` of `pid`, if it exists.
fn stat(pid: u32) -> Option<(u32, char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.first()?.chars().next()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// Live (not zombie) children of `parent`.
pub fn children(parent: u32) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(stat(*pid), Some((pp, st, _)) if pp == parent && st != 'Z'))
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((_, st, _)) if st != 'Z')
}

/// Clock ticks after boot at which `pid` started.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, _, t)| t)
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}
