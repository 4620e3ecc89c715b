//! Messages between nodes through Redis Streams: each node reads its own
//! inbox and acks stream through the consumer group `hubs`, so an entry
//! read but not yet stored (the hub was killed) is read again at the next
//! start; an entry is acknowledged and deleted once the node has stored
//! what it says, and the receiving store keeps each message once by its
//! origin, so an entry read twice changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::{ClusterError, Registry};

/// The consumer group every node reads its streams with.
const GROUP: &str = "hubs";
/// How long a read waits for an entry.
pub const READ_BLOCK: Duration = Duration::from_millis(1000);

/// A message from one node to an agent of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `NODE:ID`: the sending node and the message's id in its store.
    pub origin: String,
    /// An agent of the sending node, or `operator`.
    pub sender: String,
    /// An agent of the receiving node.
    pub recipient: String,
    /// The text.
    pub body: String,
    /// `message` or `brief`.
    pub kind: String,
}

/// How a message sent to another node ended there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The message's `origin`.
    pub origin: String,
    /// The node that tells: the message's recipient's.
    pub node: String,
    /// `delivered` or `failed`.
    pub state: String,
    /// Why it failed.
    pub reason: String,
}

/// A request from one node's hub to another's (today: spawn an agent there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Unique per request; its reply carries it.
    pub id: String,
    /// The node that asks, where the reply goes.
    pub from: String,
    /// What is asked: `spawn`.
    pub kind: String,
    /// Its details, as the kind has them (a spawn: its spec as JSON).
    pub body: String,
    /// A spawn's brief.
    pub brief: String,
}

/// A node's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's id.
    pub id: String,
    /// Whether it was done.
    pub ok: bool,
    /// What it gave (a spawn: the unit), or why it was not done.
    pub body: String,
}

/// Entries read from a stream: each with its stream id, to acknowledge.
pub type Entries<T> = Vec<(String, T)>;

pub(crate) fn inbox(node: &str) -> String {
    format!("torch:inbox:{node}")
}

pub(crate) fn acks(node: &str) -> String {
    format!("torch:acks:{node}")
}

pub(crate) fn requests(node: &str) -> String {
    format!("torch:requests:{node}")
}

pub(crate) fn replies(node: &str) -> String {
    format!("torch:replies:{node}")
}

impl Registry {
    /// Hands `message` to the inbox of `node`.
    pub async fn send_to(&self, node: &str, message: &Envelope) -> Result<(), ClusterError> {
        let fields = [
            ("origin", message.origin.as_str()),
            ("sender", &message.sender),
            ("recipient", &message.recipient),
            ("body", &message.body),
            ("kind", &message.kind),
        ];
        self.post(&inbox(node), &fields).await
    }

    /// Tells `node` how a message it sent ended.
    pub async fn ack_to(&self, node: &str, ack: &Ack) -> Result<(), ClusterError> {
        let fields = [
            ("origin", ack.origin.as_str()),
            ("node", &ack.node),
            ("state", &ack.state),
            ("reason", &ack.reason),
        ];
        self.post(&acks(node), &fields).await
    }

    /// Hands `request` to the hub of `node`.
    pub async fn request(&self, node: &str, request: &Request) -> Result<(), ClusterError> {
        let fields = [
            ("id", request.id.as_str()),
            ("from", &request.from),
            ("kind", &request.kind),
            ("body", &request.body),
            ("brief", &request.brief),
        ];
        self.post(&requests(node), &fields).await
    }

    /// Answers a request of `node`.
    pub async fn reply(&self, node: &str, reply: &Reply) -> Result<(), ClusterError> {
        let ok = if reply.ok { "1" } else { "0" };
        let fields = [("id", reply.id.as_str()), ("ok", ok), ("body", &reply.body)];
        self.post(&replies(node), &fields).await
    }

    /// Requests to this node, read as [`Self::read_inbox`] reads.
    pub async fn read_requests(&self, pending: bool) -> Result<Entries<Request>, ClusterError> {
        self.read_own(&requests(&self.node), pending).await
    }

    /// Replies to this node's requests, read as [`Self::read_inbox`] reads.
    pub async fn read_replies(&self, pending: bool) -> Result<Entries<Reply>, ClusterError> {
        self.read_own(&replies(&self.node), pending).await
    }

    /// Acknowledges and deletes requests to this node, once answered.
    pub async fn done_requests(&self, ids: &[String]) -> Result<(), ClusterError> {
        let result = self.done(&requests(&self.node), ids).await;
        self.checked(result).await
    }

    /// Acknowledges and deletes replies to this node, once read.
    pub async fn done_replies(&self, ids: &[String]) -> Result<(), ClusterError> {
        let result = self.done(&replies(&self.node), ids).await;
        self.checked(result).await
    }

    async fn post(&self, stream: &str, fields: &[(&str, &str)]) -> Result<(), ClusterError> {
        let result = async {
            let mut conn = self.connection().await?;
            let _: String = conn.xadd(stream, "*", fields).await?;
            Ok(())
        }
        .await;
        self.checked(result).await
    }

    /// The entries of `stream`, one of this node's, as `T`s.
    async fn read_own<T: FromFields>(
        &self,
        stream: &str,
        pending: bool,
    ) -> Result<Entries<T>, ClusterError> {
        let result = self.read(stream, pending).await;
        let entries = self.checked(result).await?;
        Ok(entries
            .into_iter()
            .map(|(id, f)| (id, T::from_fields(&f)))
            .collect())
    }

    /// Messages for this node: first those read before and never
    /// acknowledged (`pending`), then new ones, waiting up to
    /// [`READ_BLOCK`].
    pub async fn read_inbox(&self, pending: bool) -> Result<Entries<Envelope>, ClusterError> {
        self.read_own(&inbox(&self.node), pending).await
    }

    /// How messages this node sent ended, as [`Self::read_inbox`] reads.
    pub async fn read_acks(&self, pending: bool) -> Result<Entries<Ack>, ClusterError> {
        self.read_own(&acks(&self.node), pending).await
    }

    /// Acknowledges and deletes entries of this node's inbox, once stored.
    pub async fn done_inbox(&self, ids: &[String]) -> Result<(), ClusterError> {
        let result = self.done(&inbox(&self.node), ids).await;
        self.checked(result).await
    }

    /// Acknowledges and deletes entries of this node's acks stream.
    pub async fn done_acks(&self, ids: &[String]) -> Result<(), ClusterError> {
        let result = self.done(&acks(&self.node), ids).await;
        self.checked(result).await
    }

    async fn read(
        &self,
        stream: &str,
        pending: bool,
    ) -> Result<Vec<(String, Fields)>, ClusterError> {
        let mut conn = self.reading_connection(stream).await?;
        let made: redis::RedisResult<()> = conn.xgroup_create_mkstream(stream, GROUP, "0").await;
        if let Err(e) = made {
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
        let mut options = StreamReadOptions::default()
            .group(GROUP, &self.node)
            .count(200);
        let from = match pending {
            true => "0",
            false => {
                options = options.block(READ_BLOCK.as_millis() as usize);
                ">"
            }
        };
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[stream], &[from], &options).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| (e.id, e.map))
            .collect())
    }

    async fn done(&self, stream: &str, ids: &[String]) -> Result<(), ClusterError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        let _: () = redis::pipe()
            .xack(stream, GROUP, ids)
            .ignore()
            .xdel(stream, ids)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// An entry's fields, as read.
type Fields = HashMap<String, redis::Value>;

/// What an entry of a stream holds, from its fields.
trait FromFields {
    fn from_fields(f: &Fields) -> Self;
}

impl FromFields for Envelope {
    fn from_fields(f: &Fields) -> Self {
        Envelope {
            origin: field(f, "origin"),
            sender: field(f, "sender"),
            recipient: field(f, "recipient"),
            body: field(f, "body"),
            kind: field(f, "kind"),
        }
    }
}

impl FromFields for Ack {
    fn from_fields(f: &Fields) -> Self {
        Ack {
            origin: field(f, "origin"),
            node: field(f, "node"),
            state: field(f, "state"),
            reason: field(f, "reason"),
        }
    }
}

impl FromFields for Request {
    fn from_fields(f: &Fields) -> Self {
        Request {
            id: field(f, "id"),
            from: field(f, "from"),
            kind: field(f, "kind"),
            body: field(f, "body"),
            brief: field(f, "brief"),
        }
    }
}

impl FromFields for Reply {
    fn from_fields(f: &Fields) -> Self {
        Reply {
            id: field(f, "id"),
            ok: field(f, "ok") == "1",
            body: field(f, "body"),
        }
    }
}

fn field(map: &Fields, name: &str) -> String {
    map.get(name)
        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        .unwrap_or_default()
}
