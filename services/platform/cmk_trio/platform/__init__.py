"""What the platform's services share among themselves, between the plumbing (`rpckit`) and
the services, and not for the platform's users (their package is `cmk_trio.client`):

- `directory_link`: a service's link to identity: the token validator with identity's
  signing keys, the revocation feed that follows identity's event stream, the role checker;
  `directory_feeds`: the feeds and caches behind it;
- `access`: what a control-plane call needs on its scope and the one refusal for lacking it;
- `key_names`: the grammar of key vault key identifiers, which the vault serves and speech
  stores.

It calls identity only through the public client (`cmk_trio.client.identity`)."""
