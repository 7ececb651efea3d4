import time

from django.core.management.base import BaseCommand, CommandError

from ximilar_portal.accounts.models import Team
from ximilar_portal.history.demo import demo_data_generate


class Command(BaseCommand):
    help = (
        "Create realistic demo data quickly: teams, records, jobs, results and search answers. "
        "e.g. --records 1000000 --answers 100000 --teams 3"
    )

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, default=10_000)
        parser.add_argument("--answers", type=int, default=0)
        parser.add_argument("--teams", type=int, default=3)
        parser.add_argument("--team", type=int, help="Put everything into this existing team id.")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--chunk", type=int, default=5000)

    def handle(self, *args, **options):
        team = None
        if options["team"]:
            team = Team.objects.filter(pk=options["team"]).first()
            if team is None:
                raise CommandError(f"No team with id {options['team']}.")
        started = time.monotonic()
        made = demo_data_generate(
            teams=options["teams"],
            records=options["records"],
            answers=options["answers"],
            seed=options["seed"],
            chunk=options["chunk"],
            team=team,
        )
        seconds = time.monotonic() - started
        self.stdout.write(
            f"Created {made['records']} records in {made['teams']} team(s) and "
            f"{made['answers']} search answers in {seconds:.1f} s."
        )
