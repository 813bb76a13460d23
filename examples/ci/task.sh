#!/bin/sh
# The agent task: whatever the job asks the agent to do. It runs inside the sandbox with the
# `ci` profile: the checkout writable, no network, secrets hidden, 30 minute timeout.
set -eu
cargo build --offline
cargo test --offline
