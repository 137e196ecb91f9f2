//! Before a UDP source address becomes a member it must show that it
//! receives what is sent to it; a forged source cannot, since the answers
//! go to the address it forged. Until then it costs the server little, and
//! the same every time: no membership, no room traffic, no task, no table
//! entry, only one small answer computed from the datagram alone (a
//! stateless cookie, as DTLS's HelloVerifyRequest and QUIC's Retry do).
//!
//! - The answer carries a code: a keyed hash of the source address and the
//!   current five-minute window, so the server keeps nothing per source
//!   and still recognises the code when it comes back (in this window or
//!   the next).
//! - A bare client (a person at a `sendto`/`recvfrom` loop) types the code
//!   as a line, alone or before a message; our client sends it as `proof`
//!   and sends its datagram again, as it would after a loss.
//! - Each answer is at most three times the datagram it answers, on the
//!   wire, and all of them together stay within one global budget, so a
//!   crowd of forged sources cannot aim the server at anyone.
//!
//! Pure logic, given the time: the receive loop does the I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::command::GOODBYE_WORDS;
use crate::protocol::datagram::{ClientDatagram, ServerDatagram};

/// How long one window's codes are issued; a code is accepted in its own
/// window and the next, so for five to ten minutes.
pub const COOKIE_WINDOW: Duration = Duration::from_secs(300);

/// How many times a datagram's size, on the wire, its answer may be (as
/// QUIC allows an address it has not validated, RFC 9000 section 8.1).
pub const AMPLIFICATION: usize = 3;

/// Wire bytes a second that answers to unproven sources may take, all
/// sources together: thousands of newcomers a second, and next to nothing
/// as a reflector.
pub const UNPROVEN_BYTES_PER_SEC: usize = 128 * 1024;

/// What the budget holds at most: a burst of newcomers at once.
pub const UNPROVEN_BURST: usize = 64 * 1024;

/// Characters of a code: 40 bits, in letters and digits nobody misreads
/// (no `l`, `o`, `0` or `1`).
const CODE_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
const CODE_LENGTH: usize = 8;

/// IP and UDP headers: what each datagram costs beyond its payload.
pub fn headers(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() {
        20 + 8
    } else {
        40 + 8
    }
}

/// Issues and checks codes; holds only its secret key.
pub struct Cookies {
    key: [u8; 32],
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookies")
    }
}

impl Cookies {
    /// With a fresh random key (codes from an earlier run do not carry over).
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut key) {
            // Without an OS random source, the hasher's random keys; still
            // unknown to anyone who does not receive the codes.
            tracing::warn!(%error, "no OS randomness; using a weaker key");
            use std::hash::{BuildHasher, RandomState};
            for (index, chunk) in key.chunks_mut(8).enumerate() {
                let state = RandomState::new();
                chunk.copy_from_slice(&state.hash_one(index).to_le_bytes());
            }
        }
        Cookies { key }
    }

    /// With a given key, for tests.
    #[cfg(test)]
    pub fn with_key(key: [u8; 32]) -> Self {
        Cookies { key }
    }

    /// The code for `addr` at `elapsed` (time since the door started).
    pub fn issue(&self, addr: &SocketAddr, elapsed: Duration) -> String {
        self.code(addr, window(elapsed))
    }

    /// Whether `code` was issued to `addr` in this window or the last.
    pub fn verify(&self, addr: &SocketAddr, code: &str, elapsed: Duration) -> bool {
        if code.len() != CODE_LENGTH {
            return false;
        }
        let code = code.to_ascii_lowercase();
        let now = window(elapsed);
        [Some(now), now.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|window| self.code(addr, window) == code)
    }

    fn code(&self, addr: &SocketAddr, window: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(&window.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&addr.port().to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let bits = digest[..5]
            .iter()
            .fold(0u64, |bits, byte| bits << 8 | u64::from(*byte));
        (0..CODE_LENGTH)
            .rev()
            .map(|at| char::from(CODE_ALPHABET[(bits >> (at * 5)) as usize & 31]))
            .collect()
    }
}

impl Default for Cookies {
    fn default() -> Self {
        Self::new()
    }
}

fn window(elapsed: Duration) -> u64 {
    elapsed.as_secs() / COOKIE_WINDOW.as_secs()
}

/// The global budget for answers to unproven sources: a token bucket of
/// wire bytes.
#[derive(Debug)]
pub struct UnprovenBudget {
    tokens: usize,
    /// When the bucket was last filled.
    filled_at: Duration,
}

impl UnprovenBudget {
    pub fn new() -> Self {
        UnprovenBudget {
            tokens: UNPROVEN_BURST,
            filled_at: Duration::ZERO,
        }
    }

    /// Takes `bytes` from the budget at `elapsed`, if it has them.
    pub fn spend(&mut self, bytes: usize, elapsed: Duration) -> bool {
        let since = elapsed.saturating_sub(self.filled_at);
        let earned = since.as_micros() * UNPROVEN_BYTES_PER_SEC as u128 / 1_000_000;
        if earned > 0 {
            let earned = usize::try_from(earned).unwrap_or(usize::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(UNPROVEN_BURST);
            self.filled_at = elapsed;
        }
        if self.tokens < bytes {
            return false;
        }
        self.tokens -= bytes;
        true
    }
}

impl Default for UnprovenBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// What a datagram from an address with no session leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Proven: a session starts, and is handed `datagram` (for a bare
    /// client, what followed its code; possibly nothing).
    Member { datagram: Bytes, structured: bool },
    /// Not proven: this one answer, and nothing else.
    Answer(Vec<u8>),
}

/// Decides what a datagram from `addr`, which has no session, leads to.
pub fn admit(
    datagram: &Bytes,
    addr: &SocketAddr,
    cookies: &Cookies,
    elapsed: Duration,
) -> Admission {
    let room = answer_room(datagram.len(), addr);
    if datagram.starts_with(b"{") {
        if let Ok(request) = serde_json::from_slice::<ClientDatagram>(datagram) {
            let proven = request
                .proof
                .as_deref()
                .is_some_and(|proof| cookies.verify(addr, proof, elapsed));
            if proven {
                return Admission::Member {
                    datagram: datagram.clone(),
                    structured: true,
                };
            }
            let retry = ServerDatagram::<()>::Retry {
                ack: request.id,
                token: cookies.issue(addr, elapsed),
            }
            .encode();
            return Admission::Answer(if retry.len() <= room {
                retry
            } else {
                Vec::new()
            });
        }
    }
    let text = String::from_utf8_lossy(datagram);
    let line = text.trim();
    let (first, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if cookies.verify(addr, first, elapsed) {
        return Admission::Member {
            datagram: Bytes::copy_from_slice(rest.trim_start().as_bytes()),
            structured: false,
        };
    }
    if GOODBYE_WORDS
        .iter()
        .any(|word| line.eq_ignore_ascii_case(word))
    {
        return Admission::Answer(b"bye".to_vec());
    }
    Admission::Answer(hint(&cookies.issue(addr, elapsed), room).into_bytes())
}

/// The payload an answer to a `len`-byte datagram may have.
fn answer_room(len: usize, addr: &SocketAddr) -> usize {
    let headers = headers(addr);
    (AMPLIFICATION * (len + headers)).saturating_sub(headers)
}

/// What a bare client is told before it has proven its address: the
/// longest wording that fits `room` bytes. Even an empty datagram's
/// answer has room for the shortest.
fn hint(code: &str, room: usize) -> String {
    [
        format!(
            "* welcome! to chat over UDP, first send this code as a line, \
             alone or before your message: {code} (what you sent was not relayed)"
        ),
        format!("* to chat, send this code first: {code} (not relayed)"),
        format!("* to chat, send {code} first"),
    ]
    .into_iter()
    .find(|hint| hint.len() <= room)
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_code_is_for_one_address_and_two_windows() {
        let cookies = Cookies::with_key([7; 32]);
        let at = Duration::from_secs(1000);
        let code = cookies.issue(&addr(5000), at);
        assert_eq!(code.len(), CODE_LENGTH);
        assert!(code.bytes().all(|byte| CODE_ALPHABET.contains(&byte)));
        assert!(cookies.verify(&addr(5000), &code, at));
        assert!(cookies.verify(&addr(5000), &code.to_uppercase(), at));
        assert!(!cookies.verify(&addr(5001), &code, at), "another port");
        let next_window = at + COOKIE_WINDOW;
        assert!(cookies.verify(&addr(5000), &code, next_window));
        assert!(!cookies.verify(&addr(5000), &code, next_window + COOKIE_WINDOW));
        let other_key = Cookies::with_key([8; 32]);
        assert!(!other_key.verify(&addr(5000), &code, at));
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_its_burst() {
        let mut budget = UnprovenBudget::new();
        let start = Duration::from_secs(10);
        assert!(budget.spend(UNPROVEN_BURST, start));
        assert!(!budget.spend(1, start));
        let later = start + Duration::from_millis(500);
        assert!(budget.spend(UNPROVEN_BYTES_PER_SEC / 2, later));
        assert!(!budget.spend(1, later));
        let much_later = later + Duration::from_secs(3600);
        assert!(!budget.spend(UNPROVEN_BURST + 1, much_later));
        assert!(budget.spend(UNPROVEN_BURST, much_later));
    }

    #[test]
    fn an_unproven_datagram_gets_one_small_answer_and_no_session() {
        let cookies = Cookies::with_key([1; 32]);
        let now = Duration::from_secs(5);
        let from = addr(40000);
        for datagram in [&b""[..], b"x", b"hello there", b"\xff\xfe"] {
            let Admission::Answer(answer) =
                admit(&Bytes::copy_from_slice(datagram), &from, &cookies, now)
            else {
                panic!("no session for {datagram:?}");
            };
            let text = String::from_utf8(answer.clone()).unwrap();
            assert!(text.contains(&cookies.issue(&from, now)), "{text}");
            assert!(answer.len() + 28 <= 3 * (datagram.len() + 28), "{text}");
        }
        let Admission::Answer(bye) = admit(&Bytes::from_static(b"bye\n"), &from, &cookies, now)
        else {
            panic!("bye is answered");
        };
        assert_eq!(bye, b"bye");
    }

    #[test]
    fn the_code_makes_a_member_with_what_followed_it() {
        let cookies = Cookies::with_key([1; 32]);
        let now = Duration::from_secs(5);
        let from = addr(40000);
        let code = cookies.issue(&from, now);
        assert_eq!(
            admit(&Bytes::from(format!("{code}\n")), &from, &cookies, now),
            Admission::Member {
                datagram: Bytes::new(),
                structured: false
            }
        );
        assert_eq!(
            admit(
                &Bytes::from(format!("{} 你好 all\n", code.to_uppercase())),
                &from,
                &cookies,
                now
            ),
            Admission::Member {
                datagram: Bytes::from("你好 all"),
                structured: false
            }
        );
        // Someone else's code proves nothing.
        let other = cookies.issue(&addr(40001), now);
        assert!(matches!(
            admit(&Bytes::from(other), &from, &cookies, now),
            Admission::Answer(_)
        ));
    }

    #[test]
    fn a_structured_client_is_asked_to_retry_with_proof() {
        let cookies = Cookies::with_key([2; 32]);
        let now = Duration::from_secs(5);
        let from = addr(40000);
        let Admission::Answer(answer) =
            admit(&Bytes::from_static(br#"{"id":1}"#), &from, &cookies, now)
        else {
            panic!("unproven");
        };
        let retry: ServerDatagram = serde_json::from_slice(&answer).unwrap();
        let ServerDatagram::Retry { ack, token } = retry else {
            panic!("a retry: {retry:?}");
        };
        assert_eq!(ack, 1);
        let proven = format!(r#"{{"id":1,"proof":"{token}"}}"#);
        assert!(matches!(
            admit(&Bytes::from(proven), &from, &cookies, now),
            Admission::Member {
                structured: true,
                ..
            }
        ));
    }

    mod properties {
        use std::net::{Ipv4Addr, Ipv6Addr};

        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::{client_command, hostile_bytes, typed_text};

        fn source() -> impl Strategy<Value = SocketAddr> {
            prop_oneof![
                (any::<u32>(), 1024u16..)
                    .prop_map(|(ip, port)| { SocketAddr::from((Ipv4Addr::from(ip), port)) }),
                (any::<u128>(), 1024u16..)
                    .prop_map(|(ip, port)| { SocketAddr::from((Ipv6Addr::from(ip), port)) }),
            ]
        }

        proptest! {
            /// Whatever an unproven source sends: no session, and one
            /// answer within three times the datagram on the wire.
            #[test]
            fn unproven_datagrams_get_one_bounded_answer(
                datagram in hostile_bytes(1500),
                from in source(),
                key in any::<[u8; 32]>(),
                secs in any::<u32>(),
            ) {
                let cookies = Cookies::with_key(key);
                let now = Duration::from_secs(secs.into());
                let datagram = Bytes::from(datagram);
                match admit(&datagram, &from, &cookies, now) {
                    Admission::Answer(answer) => {
                        let wire = answer.len() + headers(&from);
                        prop_assert!(wire <= AMPLIFICATION * (datagram.len() + headers(&from)));
                    }
                    member => prop_assert!(false, "{:?} made {:?}", datagram, member),
                }
            }

            /// The code a source was given, typed before a message, makes
            /// it a member with that message, and works nowhere else.
            #[test]
            fn a_bare_code_admits_its_own_source_with_what_follows(
                from in source(),
                other in source(),
                message in typed_text(),
                key in any::<[u8; 32]>(),
                secs in any::<u32>(),
            ) {
                let cookies = Cookies::with_key(key);
                let now = Duration::from_secs(secs.into());
                let code = cookies.issue(&from, now);
                let datagram = Bytes::from(format!("{code} {message}\n"));
                let expected = message.trim().trim_start();
                prop_assert_eq!(
                    admit(&datagram, &from, &cookies, now),
                    Admission::Member {
                        datagram: Bytes::copy_from_slice(expected.as_bytes()),
                        structured: false,
                    }
                );
                if other != from {
                    let admitted = matches!(
                        admit(&datagram, &other, &cookies, now),
                        Admission::Member { .. }
                    );
                    prop_assert!(!admitted);
                }
            }

            /// A structured datagram is asked to retry; sent again with the
            /// token as proof it is admitted whole, as it was encoded.
            #[test]
            fn a_structured_datagram_retries_then_enters_as_sent(
                from in source(),
                id in any::<u64>(),
                cmd in proptest::option::of(client_command()),
                key in any::<[u8; 32]>(),
            ) {
                let cookies = Cookies::with_key(key);
                let now = Duration::from_secs(1);
                let mut request = ClientDatagram { id, cmd, proof: None, pad: None };
                let first = Bytes::from(request.encode());
                let Admission::Answer(answer) = admit(&first, &from, &cookies, now) else {
                    return Err(TestCaseError::fail("admitted without proof"));
                };
                let retry: ServerDatagram = serde_json::from_slice(&answer).unwrap();
                let ServerDatagram::Retry { ack, token } = retry else {
                    return Err(TestCaseError::fail("not a retry"));
                };
                prop_assert_eq!(ack, id);
                request.proof = Some(token);
                let again = Bytes::from(request.encode());
                let decoded: ClientDatagram = serde_json::from_slice(&again).unwrap();
                prop_assert_eq!(&decoded, &request);
                prop_assert_eq!(
                    admit(&again, &from, &cookies, now),
                    Admission::Member { datagram: again.clone(), structured: true }
                );
            }
        }
    }
}
