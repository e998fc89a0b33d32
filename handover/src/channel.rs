//! One end of a launch channel: a `SOCK_SEQPACKET` socketpair, so each
//! message arrives whole or not at all, and descriptors can travel with it.
//!
//! Both ends are made close-on-exec. The launcher clears that flag on the
//! kernel's end in the forked child only (so no other kernel started at the
//! same moment inherits it), and the kernel sets it again as soon as it
//! runs ([`End::inherited`]), so nothing the kernel starts (evcxr's child,
//! a user's subprocess) holds the channel.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The variable naming the kernel's end's descriptor.
pub const FD_VAR: &str = "ACADEMY_LAUNCH_FD";
/// Set to `1` for a kernel started into the warm pool: it waits for its
/// [`crate::Handover`] before anything else.
pub const POOLED_VAR: &str = "ACADEMY_POOLED";
/// The largest message either side sends: a handover's environment and
/// seccomp program are a few KiB, and a `SOCK_SEQPACKET` message must fit
/// the socket's send buffer whole (Linux's default is about 208 KiB).
const MAX_MESSAGE: usize = 128 << 10;
/// The most descriptors one message carries.
const MAX_FDS: usize = 4;

/// One end of a launch channel.
#[derive(Debug)]
pub struct End(OwnedFd);

/// A new channel: (the gateway's end, the kernel's end), both close-on-exec.
pub fn pair() -> std::io::Result<(End, End)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((End(a), End(b)))
}

impl End {
    /// The end this process inherited, if its launcher gave it one, and
    /// whether it is pooled. The variables are taken out of the
    /// environment and the descriptor is made close-on-exec again.
    ///
    /// # Safety
    /// Changes the environment: call it before any other thread runs.
    pub unsafe fn inherited() -> std::io::Result<Option<(End, bool)>> {
        let fd = std::env::var(FD_VAR).ok();
        let pooled = std::env::var(POOLED_VAR).is_ok_and(|v| v == "1");
        // SAFETY: the caller runs this before any other thread exists.
        unsafe {
            std::env::remove_var(FD_VAR);
            std::env::remove_var(POOLED_VAR);
        }
        let Some(fd) = fd else {
            return Ok(None);
        };
        let fd: RawFd = fd
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other(format!("{FD_VAR} is not a descriptor: {fd:?}")))?;
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(std::io::Error::other(format!(
                "{FD_VAR} names no open descriptor ({fd})"
            )));
        }
        // SAFETY: the launcher gave this process `fd` for this use alone,
        // and nothing else in it owns it.
        let end = End(unsafe { OwnedFd::from_raw_fd(fd) });
        nix::fcntl::fcntl(
            &end.0,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Some((end, pooled)))
    }

    /// Sends one message with `fds` beside it. Blocks only while the
    /// peer's buffer is full (never, for these sizes).
    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        if bytes.len() > MAX_MESSAGE {
            return Err(std::io::Error::other(format!(
                "a launch message of {} bytes is over the limit of {MAX_MESSAGE}",
                bytes.len()
            )));
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = if raw.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&raw)]
        };
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &[IoSlice::new(bytes)],
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives one message and the descriptors that came with it; `None`
    /// when the peer has closed its end. Blocks unless the end is
    /// non-blocking (then `WouldBlock`).
    pub fn recv(&self) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (len, fds, truncated) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for cmsg in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(received) = cmsg {
                            // SAFETY: the kernel just installed these
                            // descriptors in this process for us alone.
                            fds.extend(
                                received
                                    .into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                    let truncated = msg
                        .flags
                        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    break (msg.bytes, fds, truncated);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if truncated {
            return Err(std::io::Error::other(
                "a launch message was cut: too long, or too many descriptors",
            ));
        }
        // A zero-length read without descriptors is the peer's close
        // (neither side sends empty messages).
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(len);
        Ok(Some((buf, fds)))
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting (the
    /// gateway polls its ends from its async runtime).
    pub fn set_nonblocking(&self) -> std::io::Result<()> {
        let flags = nix::fcntl::fcntl(&self.0, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&self.0, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(())
    }
}

impl AsFd for End {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for End {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_arrives_whole_with_its_descriptor_and_a_close_reads_as_none() {
        let (a, b) = pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        a.send(b"{\"x\":1}", &[file.as_fd()]).unwrap();
        a.send(b"second", &[]).unwrap();
        let (bytes, fds) = b.recv().unwrap().unwrap();
        assert_eq!(bytes, b"{\"x\":1}");
        assert_eq!(fds.len(), 1);
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "a received descriptor is close-on-exec"
        );
        assert_eq!(b.recv().unwrap().unwrap().0, b"second");
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }

    #[test]
    fn a_non_blocking_end_says_so_instead_of_waiting() {
        let (a, _b) = pair().unwrap();
        a.set_nonblocking().unwrap();
        assert_eq!(a.recv().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }
}
