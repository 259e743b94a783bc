"""Deploying bundles: preflight, resumable upload, atomic install by install.sh, rollback, fleets."""

from edgepack.deploy.core import DeployResult, StatusResult, deploy_to, rollback, status
from edgepack.deploy.fleet import deploy_many

__all__ = ["DeployResult", "StatusResult", "deploy_many", "deploy_to", "rollback", "status"]
