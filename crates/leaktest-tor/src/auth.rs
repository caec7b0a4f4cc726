//! `PROTOCOLINFO 1` parsing and the authentication arithmetic: which methods Tor offers, where
//! its cookie lives, and the SAFECOOKIE HMACs (control-spec §3.24, §3.5).

use crate::error::{Result, TorError};
use crate::reply::{key_values, Reply};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::PathBuf;

/// An authentication method named in `PROTOCOLINFO`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Null,
    HashedPassword,
    Cookie,
    SafeCookie,
    /// A method this client does not know.
    #[serde(untagged)]
    Other(String),
}

impl AuthMethod {
    fn parse(s: &str) -> AuthMethod {
        match s {
            "NULL" => AuthMethod::Null,
            "HASHEDPASSWORD" => AuthMethod::HashedPassword,
            "COOKIE" => AuthMethod::Cookie,
            "SAFECOOKIE" => AuthMethod::SafeCookie,
            other => AuthMethod::Other(other.to_string()),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::Null => f.write_str("NULL"),
            AuthMethod::HashedPassword => f.write_str("HASHEDPASSWORD"),
            AuthMethod::Cookie => f.write_str("COOKIE"),
            AuthMethod::SafeCookie => f.write_str("SAFECOOKIE"),
            AuthMethod::Other(s) => f.write_str(s),
        }
    }
}

/// What `PROTOCOLINFO 1` told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolInfo {
    pub protocol_version: u32,
    pub methods: Vec<AuthMethod>,
    pub cookie_file: Option<PathBuf>,
    pub tor_version: Option<String>,
}

impl ProtocolInfo {
    /// Parses a `PROTOCOLINFO` reply.
    pub fn parse(reply: &Reply) -> Result<ProtocolInfo> {
        if !reply.is_ok() {
            return Err(TorError::Refused {
                command: "PROTOCOLINFO".into(),
                code: reply.status(),
                message: reply.message().into(),
            });
        }
        let mut info = ProtocolInfo {
            protocol_version: 0,
            methods: Vec::new(),
            cookie_file: None,
            tor_version: None,
        };
        let mut saw_header = false;
        let mut saw_auth = false;
        for line in &reply.lines {
            let (word, rest) = line.text.split_once(' ').unwrap_or((&line.text, ""));
            match word {
                "PROTOCOLINFO" => {
                    info.protocol_version = rest.trim().parse().map_err(|_| {
                        TorError::Protocol(format!("bad PROTOCOLINFO version {rest:?}"))
                    })?;
                    saw_header = true;
                }
                "AUTH" => {
                    saw_auth = true;
                    for (k, v) in key_values(rest) {
                        match k.as_str() {
                            "METHODS" => {
                                info.methods = v
                                    .split(',')
                                    .filter(|m| !m.is_empty())
                                    .map(AuthMethod::parse)
                                    .collect()
                            }
                            "COOKIEFILE" => info.cookie_file = Some(PathBuf::from(v)),
                            _ => {}
                        }
                    }
                }
                "VERSION" => {
                    for (k, v) in key_values(rest) {
                        if k == "Tor" {
                            info.tor_version = Some(v);
                        }
                    }
                }
                _ => {}
            }
        }
        if !saw_header || !saw_auth {
            return Err(TorError::Protocol(
                "PROTOCOLINFO reply without PROTOCOLINFO or AUTH line".into(),
            ));
        }
        Ok(info)
    }
}

/// Tor's auth cookie is exactly 32 bytes.
pub const COOKIE_LEN: usize = 32;

const SERVER_KEY: &[u8] = b"Tor safe cookie authentication server-to-controller hash";
const CLIENT_KEY: &[u8] = b"Tor safe cookie authentication controller-to-server hash";

fn safecookie_mac(
    key: &[u8],
    cookie: &[u8],
    client_nonce: &[u8],
    server_nonce: &[u8],
) -> Hmac<Sha256> {
    // HMAC keys of any length are valid; new_from_slice cannot fail for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(cookie);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// The parsed `AUTHCHALLENGE` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthChallenge {
    pub server_hash: Vec<u8>,
    pub server_nonce: Vec<u8>,
}

impl AuthChallenge {
    /// Parses `250 AUTHCHALLENGE SERVERHASH=<hex> SERVERNONCE=<hex>`.
    pub fn parse(reply: &Reply) -> Result<AuthChallenge> {
        let text = reply.message();
        let rest = text.strip_prefix("AUTHCHALLENGE").ok_or_else(|| {
            TorError::Protocol(format!("unexpected AUTHCHALLENGE reply {text:?}"))
        })?;
        let mut hash = None;
        let mut nonce = None;
        for (k, v) in key_values(rest) {
            match k.as_str() {
                "SERVERHASH" => hash = hex::decode(&v).ok(),
                "SERVERNONCE" => nonce = hex::decode(&v).ok(),
                _ => {}
            }
        }
        match (hash, nonce) {
            (Some(server_hash), Some(server_nonce)) if server_hash.len() == 32 => {
                Ok(AuthChallenge {
                    server_hash,
                    server_nonce,
                })
            }
            _ => Err(TorError::Protocol(format!(
                "bad AUTHCHALLENGE reply {text:?}"
            ))),
        }
    }

    /// Checks the server's hash (proving Tor knows the cookie, so we are not handing our
    /// hash to an impostor) and returns the client hash to send in `AUTHENTICATE`.
    pub fn respond(&self, cookie: &[u8], client_nonce: &[u8]) -> Result<[u8; 32]> {
        safecookie_mac(SERVER_KEY, cookie, client_nonce, &self.server_nonce)
            .verify_slice(&self.server_hash)
            .map_err(|_| {
                TorError::Auth(
                    "SAFECOOKIE server hash does not match the cookie: the control port is not the Tor that wrote this cookie"
                        .into(),
                )
            })?;
        Ok(client_hash(cookie, client_nonce, &self.server_nonce))
    }
}

/// The SAFECOOKIE server-to-controller hash (exposed for tests and fake servers).
pub fn server_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    safecookie_mac(SERVER_KEY, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// The SAFECOOKIE controller-to-server hash.
pub fn client_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    safecookie_mac(CLIENT_KEY, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_replies;

    /// Recorded from Debian 12's tor 0.4.9.11 with `CookieAuthentication 1`.
    const PROTOCOLINFO_COOKIE: &[u8] = b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/var/lib/tor/control_auth_cookie\"\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n";
    /// Tor with both a cookie and `HashedControlPassword`.
    const PROTOCOLINFO_BOTH: &[u8] = b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE=\"/run/tor/control.authcookie\"\r\n250-VERSION Tor=\"0.4.8.13\"\r\n250 OK\r\n";
    /// Tor with no authentication configured.
    const PROTOCOLINFO_NULL: &[u8] =
        b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n";

    fn one(wire: &[u8]) -> Reply {
        parse_replies(wire).unwrap().remove(0)
    }

    #[test]
    fn protocolinfo_cookie() {
        let info = ProtocolInfo::parse(&one(PROTOCOLINFO_COOKIE)).unwrap();
        assert_eq!(info.protocol_version, 1);
        assert_eq!(
            info.methods,
            vec![AuthMethod::Cookie, AuthMethod::SafeCookie]
        );
        assert_eq!(
            info.cookie_file.as_deref(),
            Some(std::path::Path::new("/var/lib/tor/control_auth_cookie"))
        );
        assert_eq!(info.tor_version.as_deref(), Some("0.4.9.11"));
    }

    #[test]
    fn protocolinfo_both_and_null() {
        let info = ProtocolInfo::parse(&one(PROTOCOLINFO_BOTH)).unwrap();
        assert!(info.methods.contains(&AuthMethod::HashedPassword));
        assert_eq!(info.tor_version.as_deref(), Some("0.4.8.13"));
        let info = ProtocolInfo::parse(&one(PROTOCOLINFO_NULL)).unwrap();
        assert_eq!(info.methods, vec![AuthMethod::Null]);
        assert_eq!(info.cookie_file, None);
    }

    #[test]
    fn protocolinfo_errors() {
        assert!(ProtocolInfo::parse(&one(b"250 OK\r\n")).is_err());
        assert!(matches!(
            ProtocolInfo::parse(&one(b"513 No such version \"2\"\r\n")),
            Err(TorError::Refused { code: 513, .. })
        ));
        assert!(ProtocolInfo::parse(&one(b"250-PROTOCOLINFO x\r\n250 OK\r\n")).is_err());
    }

    #[test]
    fn safecookie_known_answer() {
        // Independent computation: python3 -c "import hmac,hashlib;
        // c=bytes(range(32));cn=bytes([0xaa]*32);sn=bytes([0x55]*32);
        // print(hmac.new(b'Tor safe cookie authentication server-to-controller hash',c+cn+sn,hashlib.sha256).hexdigest())"
        let cookie: Vec<u8> = (0u8..32).collect();
        let cn = [0xaa; 32];
        let sn = [0x55; 32];
        assert_eq!(hex::encode(server_hash(&cookie, &cn, &sn)), SERVER_HASH_KAT);
        assert_eq!(hex::encode(client_hash(&cookie, &cn, &sn)), CLIENT_HASH_KAT);
    }
    const SERVER_HASH_KAT: &str =
        "5f7cb5569957c99373e329258545940f029af175da225f4a3125eebf30c24bba";
    const CLIENT_HASH_KAT: &str =
        "9f99f2c4b75c91123ca5c6c6e3f76a9ef7fbd9471053cbe34454a4269cc39f7c";

    #[test]
    fn challenge_verifies_server_hash() {
        let cookie = [7u8; 32];
        let cn = [1u8; 32];
        let sn = [2u8; 32];
        let wire = format!(
            "250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n",
            hex::encode_upper(server_hash(&cookie, &cn, &sn)),
            hex::encode_upper(sn)
        );
        let ch = AuthChallenge::parse(&one(wire.as_bytes())).unwrap();
        assert_eq!(
            ch.respond(&cookie, &cn).unwrap(),
            client_hash(&cookie, &cn, &sn)
        );
        // A different cookie (an impostor) fails.
        assert!(matches!(
            ch.respond(&[8u8; 32], &cn),
            Err(TorError::Auth(_))
        ));
        assert!(
            AuthChallenge::parse(&one(b"250 AUTHCHALLENGE SERVERHASH=zz SERVERNONCE=00\r\n"))
                .is_err()
        );
        assert!(AuthChallenge::parse(&one(b"250 OK\r\n")).is_err());
    }
}
