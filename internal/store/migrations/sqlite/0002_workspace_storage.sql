-- managed: berth created the workspace's directory (1) rather than importing
-- an existing host directory (0); only a managed directory may be deleted
-- with its workspace.
-- image_id: the image ID the workspace's container was last created from,
-- resolved from image (or the server default) when the workspace started.
ALTER TABLE workspaces ADD COLUMN managed INTEGER NOT NULL DEFAULT 0 CHECK (managed IN (0, 1));
ALTER TABLE workspaces ADD COLUMN image_id TEXT NOT NULL DEFAULT '';
-- the overlap check (equal, ancestor or descendant paths) reads every path
CREATE INDEX workspaces_path ON workspaces (path);
