//! Per-task cgroups: memory (tmpfs pages included), processes and CPU limited for the whole task,
//! not per process, and out-of-memory kills told apart from other exits.
//!
//! Groups are made under the server's **own** group, never in one it did not create:
//! - **cgroup v2** (a delegated subtree, the production norm): `<own>/gofer-tasks/<job>`, with
//!   `memory.max`, `memory.swap.max = 0`, `pids.max`, `cpu.max` and `cpu.weight`. The v2 rule
//!   "no processes in inner groups" means the server first moves itself into `<own>/gofer-server`.
//! - **cgroup v1** (controllers mounted one per hierarchy): `<memory>/<own>/gofer-tasks/<job>`
//!   (`memory.limit_in_bytes`), `<pids>/<own>/gofer-tasks/<job>` (`pids.max`), and when the `cpu`
//!   controller is there `<cpu>/<own>/gofer-tasks/<job>` (`cpu.cfs_quota_us`, `cpu.shares`).
//!
//! A sandbox joins its groups before it creates anything: the launcher's pid is written to each
//! `cgroup.procs` while bwrap still waits for its options, so every process of the task starts
//! inside. Attach joins them too (docs/attach.md), so what it runs counts in the task's limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};

/// The group under the server's own that holds one group per task.
const TASKS_GROUP: &str = "gofer-tasks";
/// v2: the leaf the server moves itself into, so its own group may have children with controllers.
const SERVER_GROUP: &str = "gofer-server";
/// The CFS period the quota is expressed in (the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup version the limits are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Where task groups are made: found once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    version: Version,
    /// v2: `<own>/gofer-tasks/<instance>`; v1: the same under each controller's mount.
    parents: Parents,
    /// Empty task groups, ready for the next task: making and removing a memory cgroup costs the
    /// kernel about a millisecond each, on the path of every task.
    pool: std::sync::Arc<std::sync::Mutex<Vec<TaskCgroup>>>,
    /// Names the next new group (`slot-<n>`).
    next_slot: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, Clone)]
enum Parents {
    V2(PathBuf),
    V1 { memory: PathBuf, pids: PathBuf, cpu: Option<PathBuf> },
}

/// The limits one task's groups get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskLimits {
    /// Memory, tmpfs pages included, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads at once.
    pub pids: u64,
    /// CPU in millicores (1000 = one core of quota).
    pub cpu_millis: u32,
}

/// One task's groups.
#[derive(Debug, Clone)]
pub(crate) struct TaskCgroup {
    version: Version,
    /// v2: the one group; v1: memory, pids and maybe cpu.
    dirs: Vec<PathBuf>,
    /// The group's OOM-kill count when it was given to this task (pooled groups keep counting).
    oom_baseline: u64,
}

/// A line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, PartialEq, Eq)]
struct Membership<'a> {
    controllers: Vec<&'a str>,
    path: &'a str,
}

fn memberships(proc_self_cgroup: &str) -> Vec<Membership<'_>> {
    proc_self_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let controllers = controllers.split(',').filter(|c| !c.is_empty()).collect();
            Some(Membership { controllers, path })
        })
        .collect()
}

/// A cgroup mount from `/proc/self/mountinfo`: where it is, which part of its hierarchy it shows
/// (`root`), and its controllers (v1; empty for v2).
#[derive(Debug, PartialEq, Eq)]
struct Mount<'a> {
    point: &'a str,
    root: &'a str,
    v2: bool,
    controllers: Vec<&'a str>,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent major:minor root point options [optional…] - fstype source super-options
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let tail: Vec<&str> = tail.split(' ').collect();
            let (root, point) = (*head.get(3)?, *head.get(4)?);
            match *tail.first()? {
                "cgroup2" => Some(Mount { point, root, v2: true, controllers: Vec::new() }),
                "cgroup" => {
                    let controllers = tail.get(2)?.split(',').filter(|o| is_v1_controller(o)).collect();
                    Some(Mount { point, root, v2: false, controllers })
                }
                _ => None,
            }
        })
        .collect()
}

fn is_v1_controller(option: &str) -> bool {
    matches!(option, "memory" | "pids" | "cpu" | "cpuacct" | "cpuset" | "blkio" | "devices" | "freezer")
}

/// The directory of the group at `path` (as `/proc/self/cgroup` names it) under `mount`, or
/// `None` when the mount does not show that part of the hierarchy.
fn group_dir(mount: &Mount<'_>, path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" { Some(path) } else { path.strip_prefix(mount.root) }?;
    let relative = relative.trim_start_matches('/');
    Some(if relative.is_empty() { PathBuf::from(mount.point) } else { Path::new(mount.point).join(relative) })
}

/// Where this process's v1 `controller` group is, if that controller is mounted.
fn v1_dir(mounts: &[Mount<'_>], members: &[Membership<'_>], controller: &str) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| !m.v2 && m.controllers.contains(&controller))?;
    let member = members.iter().find(|m| m.controllers.contains(&controller))?;
    group_dir(mount, member.path)
}

/// Where this process's v2 group is, if the unified hierarchy is mounted.
fn v2_dir(mounts: &[Mount<'_>], members: &[Membership<'_>]) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| m.v2)?;
    let member = members.iter().find(|m| m.controllers.is_empty())?;
    group_dir(mount, member.path)
}

/// How the pieces of a v2 group's `cgroup.controllers` decide whether it can hold task groups.
fn v2_has_controllers(controllers: &str) -> bool {
    let available: Vec<&str> = controllers.split_whitespace().collect();
    ["memory", "pids"].iter().all(|c| available.contains(c))
}

/// `cpu.cfs_quota_us` and `cpu.shares` (v1) for `cpu_millis`.
fn v1_cpu(cpu_millis: u32) -> (u64, u64) {
    let millis = u64::from(cpu_millis.max(10));
    // The kernel's smallest quota is 1 ms; shares below 2 are raised to 2.
    ((millis * CPU_PERIOD_US / 1000).max(1000), (millis * 1024 / 1000).max(2))
}

/// `cpu.max` and `cpu.weight` (v2) for `cpu_millis`: weight 100 is one core's worth.
fn v2_cpu(cpu_millis: u32) -> (String, u64) {
    let (quota, _) = v1_cpu(cpu_millis);
    (format!("{quota} {CPU_PERIOD_US}"), (u64::from(cpu_millis) / 10).clamp(1, 10_000))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| io_error("writing", path, e))
}

impl Cgroups {
    /// Finds the server's own groups and prepares the parent of task groups; `Err` says why no
    /// cgroup can be used here (start-up then reports it, see [`crate::LocalScheduler::new`]).
    pub(crate) fn detect() -> Result<Self, String> {
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("reading {p}: {e}"));
        let (cgroup, mountinfo) = (read("/proc/self/cgroup")?, read("/proc/self/mountinfo")?);
        let (members, mounts) = (memberships(&cgroup), cgroup_mounts(&mountinfo));
        // v2 first where it has the controllers (the production norm), else v1.
        let v2_problem = match v2_dir(&mounts, &members) {
            Some(own) => match Self::prepare_v2(&own) {
                Ok(cgroups) => return Ok(cgroups),
                Err(e) => e,
            },
            None => "no cgroup v2 hierarchy is mounted".to_owned(),
        };
        let (memory, pids) = match (v1_dir(&mounts, &members, "memory"), v1_dir(&mounts, &members, "pids")) {
            (Some(memory), Some(pids)) => (memory, pids),
            _ => {
                return Err(format!(
                    "{v2_problem}; and the cgroup v1 memory and pids controllers are not both mounted"
                ));
            }
        };
        let cpu = v1_dir(&mounts, &members, "cpu");
        let instance = instance_name();
        let roots: Vec<PathBuf> =
            [Some(&memory), Some(&pids), cpu.as_ref()].into_iter().flatten().map(|d| d.join(TASKS_GROUP)).collect();
        roots.iter().for_each(|root| sweep_stale_instances(root));
        let parents = Parents::V1 {
            memory: memory.join(TASKS_GROUP).join(&instance),
            pids: pids.join(TASKS_GROUP).join(&instance),
            cpu: cpu.map(|c| c.join(TASKS_GROUP).join(&instance)),
        };
        let cgroups = Cgroups::new(Version::V1, parents);
        cgroups.check_writable().map_err(|e| format!("{v2_problem}; cgroup v1: {e}"))?;
        Ok(cgroups)
    }

    /// v2: enables the controllers for children of the server's own group, moving the server into
    /// a leaf of its own first (a group with processes cannot hand controllers to children).
    fn prepare_v2(own: &Path) -> Result<Self, String> {
        let controllers = own.join("cgroup.controllers");
        let available = std::fs::read_to_string(&controllers).map_err(|e| io_error("reading", &controllers, e))?;
        if !v2_has_controllers(&available) {
            return Err(format!(
                "the cgroup v2 group {} has no memory and pids controllers (delegate them to the service)",
                own.display()
            ));
        }
        let server = own.join(SERVER_GROUP);
        let procs = own.join("cgroup.procs");
        let others: Vec<String> = std::fs::read_to_string(&procs)
            .map_err(|e| io_error("reading", &procs, e))?
            .lines()
            .filter(|p| *p != rustix::process::getpid().as_raw_nonzero().to_string())
            .map(str::to_owned)
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "the cgroup v2 group {} holds other processes ({}); give the service a delegated group of its own",
                own.display(),
                others.join(", ")
            ));
        }
        create_dir(&server)?;
        write(&server.join("cgroup.procs"), &rustix::process::getpid().as_raw_nonzero().to_string())?;
        let wanted =
            if available.split_whitespace().any(|c| c == "cpu") { "+memory +pids +cpu" } else { "+memory +pids" };
        write(&own.join("cgroup.subtree_control"), wanted)?;
        let tasks = own.join(TASKS_GROUP);
        create_dir(&tasks)?;
        write(&tasks.join("cgroup.subtree_control"), wanted)?;
        sweep_stale_instances(&tasks);
        let instance = tasks.join(instance_name());
        create_dir(&instance)?;
        write(&instance.join("cgroup.subtree_control"), wanted)?;
        let cgroups = Cgroups::new(Version::V2, Parents::V2(instance));
        cgroups.check_writable()?;
        Ok(cgroups)
    }

    fn new(version: Version, parents: Parents) -> Self {
        Self { version, parents, pool: Default::default(), next_slot: Default::default() }
    }

    /// Makes a first group and writes limits to it: proves it can be done, at start-up. The group
    /// then waits in the pool for the first task.
    fn check_writable(&self) -> Result<(), String> {
        let group = self.acquire(TaskLimits { memory_bytes: 64 << 20, pids: 16, cpu_millis: 1000 })?;
        self.release(&group);
        Ok(())
    }

    /// The version in use.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// Gives a task its groups with its limits: an empty pooled group when there is one, else a
    /// new one under this scheduler's own parent (so two schedulers on one host never share a
    /// group). On failure nothing is left behind.
    pub(crate) fn acquire(&self, limits: TaskLimits) -> Result<TaskCgroup, String> {
        let pooled = self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut group = match pooled {
            Some(group) => group,
            None => {
                let n = self.next_slot.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut group = TaskCgroup { version: self.version, dirs: Vec::new(), oom_baseline: 0 };
                if let Err(e) = self.make_dirs(&mut group, &format!("slot-{n}")) {
                    group.remove();
                    return Err(e);
                }
                group
            }
        };
        if let Err(e) = group.set_limits(limits) {
            group.remove();
            return Err(e);
        }
        group.oom_baseline = group.oom_count();
        Ok(group)
    }

    /// Empties a finished task's groups and pools them; groups that do not empty are removed.
    pub(crate) fn release(&self, group: &TaskCgroup) {
        if group.empty_out() {
            self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(group.clone());
        } else {
            group.remove();
        }
    }

    /// This scheduler's parents of task groups (one per controller hierarchy on v1).
    pub(crate) fn parents(&self) -> Vec<PathBuf> {
        match &self.parents {
            Parents::V2(parent) => vec![parent.clone()],
            Parents::V1 { memory, pids, cpu } => {
                [Some(memory), Some(pids), cpu.as_ref()].into_iter().flatten().cloned().collect()
            }
        }
    }

    fn make_dirs(&self, group: &mut TaskCgroup, name: &str) -> Result<(), String> {
        for parent in self.parents() {
            let dir = parent.join(name);
            create_dir(&dir)?;
            group.dirs.push(dir);
        }
        Ok(())
    }
}

/// This scheduler's parent under `gofer-tasks`: `<pid>-<n>`, unique on the host while the process
/// lives (`n` counts the schedulers this process made).
fn instance_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", rustix::process::getpid().as_raw_nonzero())
}

/// Removes the parents (and their task groups) left under `tasks_root` by server processes that
/// are gone, killing whatever might still run in them.
fn sweep_stale_instances(tasks_root: &Path) {
    let Ok(entries) = std::fs::read_dir(tasks_root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // The parent first: `remove` goes through its list backwards, children before parents.
        let dirs: Vec<PathBuf> = std::iter::once(entry.path())
            .chain(
                std::fs::read_dir(entry.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            )
            .collect();
        TaskCgroup { version: Version::V1, dirs, oom_baseline: 0 }.remove();
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating the cgroup", parent, e))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("creating the cgroup", dir, e)),
    }
}

/// Reads `key N` from a flat keyed file (`memory.oom_control`, `memory.events`).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

impl TaskCgroup {
    /// The `cgroup.procs` files a process writes its pid to, to join every group of the task.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves `pid` (the launcher, before it starts anything) into every group of the task.
    pub(crate) fn add(&self, pid: u32) -> Result<(), String> {
        for procs in self.procs_files() {
            write(&procs, &pid.to_string())?;
        }
        Ok(())
    }

    /// Writes the task's limits (v2: one group; v1: memory, pids and maybe cpu, in that order).
    fn set_limits(&self, limits: TaskLimits) -> Result<(), String> {
        let memory_bytes = limits.memory_bytes.to_string();
        match self.version {
            Version::V2 => {
                let dir = self.dirs.first().ok_or("no cgroup")?;
                write(&dir.join("memory.max"), &memory_bytes)?;
                // No swap: a task over its memory is killed rather than slowed into the host's swap.
                if dir.join("memory.swap.max").exists() {
                    write(&dir.join("memory.swap.max"), "0")?;
                }
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
                if dir.join("cpu.max").exists() {
                    let (max, weight) = v2_cpu(limits.cpu_millis);
                    write(&dir.join("cpu.max"), &max)?;
                    write(&dir.join("cpu.weight"), &weight.to_string())?;
                }
            }
            Version::V1 => {
                let (memory, pids) = match self.dirs.as_slice() {
                    [memory, pids, ..] => (memory, pids),
                    _ => return Err("missing v1 cgroups".into()),
                };
                // memory + swap may never be under memory: lift it first, then set both.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, "-1")?;
                }
                write(&memory.join("memory.limit_in_bytes"), &memory_bytes)?;
                if memsw.exists() {
                    write(&memsw, &memory_bytes)?;
                }
                write(&pids.join("pids.max"), &limits.pids.to_string())?;
                if let Some(cpu) = self.dirs.get(2) {
                    let (quota, shares) = v1_cpu(limits.cpu_millis);
                    write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    write(&cpu.join("cpu.shares"), &shares.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The group's OOM-kill count so far (v1 `memory.oom_control`, v2 `memory.events`:
    /// `oom_kill N`; `memory.failcnt` also counts reclaim, so it is not used).
    fn oom_count(&self) -> u64 {
        let Some(memory) = self.dirs.first() else { return 0 };
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        std::fs::read_to_string(memory.join(file)).ok().and_then(|t| keyed_value(&t, "oom_kill")).unwrap_or(0)
    }

    /// Whether the kernel's OOM killer killed a process of the task.
    pub(crate) fn oom_killed(&self) -> bool {
        self.oom_count() > self.oom_baseline
    }

    /// Kills what is left in the groups and waits until they hold no process; false if they do not
    /// empty. On v1 the memory the task left charged (page cache) is reclaimed too.
    fn empty_out(&self) -> bool {
        for _ in 0..50 {
            let busy: Vec<&PathBuf> = self
                .dirs
                .iter()
                .filter(|d| std::fs::read_to_string(d.join("cgroup.procs")).map_or(true, |p| !p.trim().is_empty()))
                .collect();
            if busy.is_empty() {
                if self.version == Version::V1
                    && let Some(memory) = self.dirs.first()
                {
                    // Best effort: a task group starts its next task with nothing charged.
                    let _ = std::fs::write(memory.join("memory.force_empty"), "0");
                }
                return true;
            }
            busy.into_iter().for_each(|d| kill_members(d));
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// SIGKILLs whatever is still in the task's groups (nothing, normally: the pid namespace ends
    /// with the task), then removes the groups, retrying briefly while the last processes exit.
    pub(crate) fn remove(&self) {
        for _ in 0..50 {
            let mut busy = false;
            for dir in self.dirs.iter().rev() {
                if !dir.exists() {
                    continue;
                }
                if std::fs::remove_dir(dir).is_err() {
                    busy = true;
                    kill_members(dir);
                }
            }
            if !busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(groups = ?self.dirs, "could not remove a task's cgroups");
    }
}

fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()).filter_map(Pid::from_raw) {
        // Gone already, or not ours to signal: nothing else to do.
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const V1_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/d0d7\n1:cpu:/\n0::/\n";
    const V1_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:34 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_groups_are_found_under_each_controllers_mount() {
        let (members, mounts) = (memberships(V1_CGROUP), cgroup_mounts(V1_MOUNTINFO));
        assert_eq!(v1_dir(&mounts, &members, "memory").unwrap(), Path::new("/sys/fs/cgroup/memory/process_api/d0d7"));
        assert_eq!(v1_dir(&mounts, &members, "pids").unwrap(), Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(v1_dir(&mounts, &members, "cpu").unwrap(), Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(v1_dir(&mounts, &members, "blkio"), None, "not mounted here");
        assert_eq!(v2_dir(&mounts, &members).unwrap(), Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_v2_group_is_found_through_a_mount_of_part_of_the_hierarchy() {
        // A container that sees only its own part of the hierarchy, mounted at /sys/fs/cgroup.
        let mounts = cgroup_mounts("50 40 0:40 /system.slice/gofer.service /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let members = memberships("0::/system.slice/gofer.service/sub\n");
        assert_eq!(v2_dir(&mounts, &members).unwrap(), Path::new("/sys/fs/cgroup/sub"));
        let elsewhere = memberships("0::/other.slice\n");
        assert_eq!(v2_dir(&mounts, &elsewhere), None);
    }

    #[test]
    fn a_v2_group_needs_memory_and_pids() {
        assert!(v2_has_controllers("cpuset cpu io memory hugetlb pids rdma misc"));
        assert!(!v2_has_controllers("cpu io"));
        assert!(!v2_has_controllers(""));
    }

    #[test]
    fn cpu_follows_the_tasks_millicores() {
        assert_eq!(v1_cpu(1000), (100_000, 1024));
        assert_eq!(v1_cpu(500), (50_000, 512));
        assert_eq!(v1_cpu(0), (1000, 10), "the kernel's smallest quota");
        assert_eq!(v2_cpu(2000), ("200000 100000".to_owned(), 200));
    }

    #[test]
    fn oom_kills_are_read_from_the_keyed_file() {
        assert_eq!(keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(keyed_value("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n", "oom_kill"), Some(1));
        assert_eq!(keyed_value("oom_kill_disable 1\n", "oom_kill"), None);
    }
}
