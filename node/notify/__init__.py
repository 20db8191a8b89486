"""Notifications: what a post owes its queue's subscribers, sent from the partition's outbox."""
