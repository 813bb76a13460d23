//! The GPU scan over a fake /dev built by hand. Character devices 0:0 (what
//! overlayfs calls a whiteout) can be made without privilege since Linux 5.8;
//! as root the fake nodes get the real majors (DRM 226, NVIDIA 195).

use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::*;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A character device at `dev/rel`: `major:minor` as root, else 0:0.
fn chr(dev: &Path, rel: &str, major: u64, minor: u64) -> (u32, u32) {
    let p = dev.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let (major, minor) = if root() { (major, minor) } else { (0, 0) };
    mknod(
        &p,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
    (major as u32, minor as u32)
}

fn link(dev: &Path, rel: &str, target: &str) {
    let p = dev.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn paths(nodes: &GpuNodes) -> Vec<String> {
    nodes
        .nodes
        .iter()
        .map(|n| n.path.display().to_string())
        .collect()
}

fn skipped(nodes: &GpuNodes, path: &str) -> Option<&'static str> {
    nodes
        .skipped
        .iter()
        .find(|s| s.path == Path::new(path))
        .map(|s| s.why)
}

#[test]
fn nvidia_and_dri_nodes_are_found_with_their_numbers() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path();
    let card = chr(dev, "dri/card0", 226, 0);
    chr(dev, "dri/renderD128", 226, 128);
    chr(dev, "nvidia0", 195, 0);
    chr(dev, "nvidiactl", 195, 255);
    chr(dev, "nvidia-uvm", 510, 0);
    chr(dev, "nvidia-caps/nvidia-cap1", 511, 1);
    // The rest of /dev is never looked at.
    chr(dev, "null", 1, 3);
    chr(dev, "fb0", 29, 0);
    let found = scan_gpu_in(dev);
    assert_eq!(
        paths(&found),
        [
            "/dev/nvidia-caps/nvidia-cap1",
            "/dev/nvidia-uvm",
            "/dev/nvidia0",
            "/dev/nvidiactl",
            "/dev/dri/card0",
            "/dev/dri/renderD128",
        ]
    );
    let c = &found.nodes[4];
    assert_eq!((c.major, c.minor), card);
    assert!(found.skipped.is_empty(), "{found:?}");
    assert!(found.links.is_empty());
}

#[test]
fn nothing_but_character_devices_and_links_to_them() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path();
    chr(dev, "dri/card0", 226, 0);
    chr(dev, "dri/renderD128", 226, 128);
    // A regular file, a fifo, a symlink to a node outside, a nested directory.
    std::fs::write(dev.join("dri/card1"), "x").unwrap();
    nix::unistd::mkfifo(&dev.join("nvidia-fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    chr(dev, "mem", 1, 1);
    link(dev, "nvidia9", "mem");
    link(dev, "dri/card2", "../mem");
    chr(dev, "dri/sub/card3", 226, 3);
    // by-path: links to exposed nodes are kept, others skipped.
    link(dev, "dri/by-path/pci-0000:00:02.0-card", "../card0");
    link(dev, "dri/by-path/pci-0000:00:02.0-render", "../renderD128");
    link(dev, "dri/by-path/evil", "../../mem");
    link(dev, "dri/by-path/abs", "/dev/dri/card0");
    link(dev, "dri/by-path/gone", "../card1");
    let found = scan_gpu_in(dev);
    assert_eq!(paths(&found), ["/dev/dri/card0", "/dev/dri/renderD128"]);
    let links: Vec<(String, String)> = found
        .links
        .iter()
        .map(|l| (l.path.display().to_string(), l.target.display().to_string()))
        .collect();
    assert_eq!(
        links,
        [
            (
                "/dev/dri/by-path/pci-0000:00:02.0-card".to_string(),
                "../card0".to_string()
            ),
            (
                "/dev/dri/by-path/pci-0000:00:02.0-render".to_string(),
                "../renderD128".to_string()
            ),
        ]
    );
    assert_eq!(
        skipped(&found, "/dev/dri/card1"),
        Some("not a character device")
    );
    assert_eq!(
        skipped(&found, "/dev/nvidia-fifo"),
        Some("not a character device")
    );
    assert_eq!(
        skipped(&found, "/dev/nvidia9"),
        Some("a symlink (only nodes are bound)")
    );
    assert_eq!(
        skipped(&found, "/dev/dri/card2"),
        Some("a symlink (only nodes are bound)")
    );
    assert_eq!(skipped(&found, "/dev/dri/sub"), Some("a directory"));
    for l in ["evil", "abs", "gone"] {
        assert_eq!(
            skipped(&found, &format!("/dev/dri/by-path/{l}")),
            Some("a link that does not lead to an exposed node"),
            "{l}"
        );
    }
    assert_eq!(skipped(&found, "/dev/mem"), None, "never looked at");
}

#[test]
fn a_block_device_is_skipped() {
    if !root() {
        eprintln!("SKIP: a block device needs mknod as root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dev = t.path();
    mknod(
        &dev.join("nvidia-block"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        makedev(8, 0),
    )
    .unwrap();
    let found = scan_gpu_in(dev);
    assert!(found.nodes.is_empty());
    assert_eq!(skipped(&found, "/dev/nvidia-block"), Some("a block device"));
}

#[test]
fn a_symlinked_dri_or_caps_directory_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path();
    chr(dev, "elsewhere/card0", 226, 0);
    link(dev, "dri", "elsewhere");
    link(dev, "nvidia-caps", "elsewhere");
    let found = scan_gpu_in(dev);
    assert!(found.nodes.is_empty(), "{found:?}");
    assert_eq!(
        skipped(&found, "/dev/dri"),
        Some("a symlink (only nodes are bound)")
    );
    assert_eq!(
        skipped(&found, "/dev/nvidia-caps"),
        Some("a symlink (only nodes are bound)")
    );
}

#[test]
fn no_gpu_at_all() {
    let t = tempfile::tempdir().unwrap();
    chr(t.path(), "null", 1, 3);
    assert_eq!(scan_gpu_in(t.path()), GpuNodes::default());
    assert_eq!(
        scan_gpu_in(&PathBuf::from("/nonexistent")),
        GpuNodes::default()
    );
}

#[test]
fn relative_names_for_the_mount_step() {
    assert_eq!(
        GpuNodes::relative(Path::new("/dev/dri/card0")),
        Path::new("dri/card0")
    );
}
