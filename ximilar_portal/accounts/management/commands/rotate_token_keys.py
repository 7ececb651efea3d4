"""Re-encrypt every stored Ximilar token with the primary key of the key ring.

Online and safe to repeat or interrupt: each row is rewritten on its own, only
if its ciphertext is still the one that was read (compare-and-set), and rows
already on the primary key are left alone. Run it after putting a new key first
in XIMILAR_TOKEN_KEYS; once it reports no rows left on the old key, that key can
be removed from the ring."""

from collections import Counter

from django.core.management.base import BaseCommand

from ximilar_portal.accounts.models import Credential
from ximilar_portal.accounts.services import credential_binding, key_ring
from ximilar_portal.lib.crypto import DecryptionError


class Command(BaseCommand):
    help = "Re-encrypt stored API tokens with the primary key of XIMILAR_TOKEN_KEYS."

    def handle(self, *args, **options):
        ring = key_ring()
        before, rotated, unreadable = Counter(), 0, 0
        for pk, team_id, ciphertext in Credential.objects.values_list(
            "pk", "team_id", "ciphertext"
        ).iterator():
            before[self._key_id(ring, ciphertext)] += 1
            try:
                # Malformed values raise here too, and are counted, not fatal.
                if not ring.needs_rotation(ciphertext):
                    continue
                new = ring.rotate(ciphertext, bound_to=credential_binding(team_id))
            except DecryptionError:
                unreadable += 1
                continue
            rotated += Credential.objects.filter(pk=pk, ciphertext=ciphertext).update(
                ciphertext=new
            )
        self._report(ring, before, rotated, unreadable)

    @staticmethod
    def _key_id(ring, ciphertext):
        try:
            return ring.key_id_of(ciphertext)
        except DecryptionError:
            return "(unreadable)"

    def _report(self, ring, before, rotated, unreadable):
        for key_id, count in sorted(before.items()):
            self.stdout.write(f"before: {count} token(s) on key {key_id}")
        self.stdout.write(f"rotated: {rotated} token(s) to primary key {ring.primary_id}")
        if unreadable:
            self.stderr.write(
                f"unreadable: {unreadable} token(s) could not be decrypted with any key "
                "in the ring; their teams must save their token again."
            )
