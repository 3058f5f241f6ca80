//! A minimal writer for the "newc" cpio format, the one the kernel unpacks as an initramfs.
//! Written here rather than piped through `cpio(1)` so the archive's layout (paths, modes,
//! symlinks) is exactly what the guest needs, with no staging directory on the host.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// Contents read from a host file at write time, with this mode.
    HostFile {
        source: PathBuf,
        mode: u32,
    },
    Bytes {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
}

/// Archive members by guest path (absolute, `/`-separated); parent directories are implied.
#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|x| x.1)
            .unwrap_or_default()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(path, entry);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// Writes the archive; returns the number of bytes written.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut w = Counted { inner: out, n: 0 };
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data) = match entry {
                Entry::Dir => (0o040755, Vec::new()),
                Entry::HostFile { source, mode } => (0o100000 | mode, std::fs::read(source)?),
                Entry::Bytes { data, mode } => (0o100000 | mode, data.clone()),
                Entry::Symlink(target) => (0o120777, target.as_bytes().to_vec()),
            };
            member(&mut w, ino as u32 + 1, mode, path, &data)?;
        }
        member(&mut w, 0, 0, "TRAILER!!!", &[])?;
        Ok(w.n)
    }
}

struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Counted<'_, W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.inner.write_all(b)?;
        self.n += b.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.n % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }
}

fn member<W: Write>(
    w: &mut Counted<'_, W>,
    ino: u32,
    mode: u32,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize (with the NUL), check.
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    let mut header = String::from("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    w.put(header.as_bytes())?;
    w.put(name.as_bytes())?;
    w.put(&[0])?;
    w.pad4()?;
    w.put(data)?;
    w.pad4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_with_implied_parents() {
        let mut a = Archive::default();
        a.add("/bin/sh", Entry::Symlink("busybox".into()));
        a.add(
            "/init",
            Entry::Bytes {
                data: b"#!/bin/sh\n".to_vec(),
                mode: 0o755,
            },
        );
        let mut out = Vec::new();
        let n = a.write_to(&mut out).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        // "bin" (implied), "bin/sh", "init", trailer — in that order.
        let bin = text.find("bin\0").unwrap();
        let sh = text.find("bin/sh\0").unwrap();
        let init = text.find("init\0").unwrap();
        assert!(bin < sh && sh < init && init < text.find("TRAILER!!!").unwrap());
        assert!(out.starts_with(b"070701"));
        // Directory mode in the first header, at field 2 (after magic and ino).
        assert_eq!(&out[14..22], b"000041ed");
        assert!(text.contains("#!/bin/sh\n"));
    }
}
