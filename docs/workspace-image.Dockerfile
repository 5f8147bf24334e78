# A production workspace image for berth: what a workspace container runs.
#
#   docker build -t berth-workspace:latest -f docs/workspace-image.Dockerfile docs
#   berth serve --workspace-image berth-workspace:latest
#
# What berth needs of a workspace image:
#   - a POSIX /bin/sh with sleep, tr and grep: the container's idle main
#     process is a shell loop, and cancelling a command finds its processes
#     through /proc with a small sh script;
#   - git, for git_operation tasks;
#   - the claude CLI (npm package @anthropic-ai/claude-code), for claude_chat
#     tasks; berth passes the API key as ANTHROPIC_API_KEY, never on the
#     command line;
#   - a non-root user whose uid:gid matches --workspace-user (default
#     1000:1000) and can write the project directories mounted at /workspace.
# berth drops every capability, sets no-new-privileges and applies memory,
# CPU and pids limits, so nothing in the image should need privileges.
#
# This file needs a registry to build (it pulls node:22-bookworm-slim);
# berth's own tests build a busybox image locally instead.

FROM node:22-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates openssh-client procps \
 && rm -rf /var/lib/apt/lists/*

RUN npm install -g @anthropic-ai/claude-code \
 && npm cache clean --force

# The node image already has a "node" user with uid:gid 1000:1000; give it a
# clearer name for logs and prompts.
RUN usermod -l berth -d /home/berth -m node && groupmod -n berth node

USER 1000:1000
WORKDIR /workspace
ENV HOME=/home/berth
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
