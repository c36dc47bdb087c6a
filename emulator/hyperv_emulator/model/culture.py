"""What a host's language, time zone and Windows version change in what it sends.

Real hosts localize display text: integration-service names ("Takt" for Heartbeat on a German host),
``PrimaryStatusDescription`` and the VM's ``Status``. Enum names, Ids and numbers never change. Dates
go out in the host's local time with its offset. Sources per text: docs/emulator.md, Conformance
("States, dates, names, errors"); texts no public capture shows are marked *unconfirmed* there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hyperv_emulator.model.enums import IntegrationStatus

# Component GUIDs at the end of VMIntegrationComponent.Id (``Microsoft:<VMId>\<GUID>``), keyed by the
# en-US PowerShell name (hashicorp/vagrant PR #11499, dsccommunity/HyperVDsc#76).
SERVICE_IDS: dict[str, str] = {
    "Guest Service Interface": "6C09BB55-D683-4DA0-8931-C9BF705F6480",
    "Heartbeat": "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47",
    "Key-Value Pair Exchange": "2A34B1C2-FD73-4043-8A5B-DD2159BC743F",
    "Shutdown": "9F8233AC-BE49-4C79-8EE3-E7E1985B2077",
    "Time Synchronization": "2497F4DE-E9FA-4204-80E4-4B75C46419C0",
    "VSS": "5CED1297-4598-4915-A5FC-AD21BB4D02A4",
}


@dataclass(frozen=True)
class Texts:
    """One language's display texts; a name missing here is sent in English."""

    service_names: dict[str, str] = field(default_factory=dict)  # en-US name -> localized name
    status: dict[IntegrationStatus, str] = field(default_factory=dict)
    operating_normally: str = "Operating normally"
    merging_disks: str = "Merging disks"
    migrating: str = "Migrating"  # the VM's Status during a live migration (*unconfirmed* wording)


EN_US = Texts(
    status={
        IntegrationStatus.Ok: "OK",
        IntegrationStatus.NoContact: "No Contact",
        IntegrationStatus.LostCommunication: "Lost Communication",
        IntegrationStatus.Disabled: "Disabled",
    }
)
# German service names and "OK": docker/for-win#409 and PlagueHO/LabBuilder#183 (Get-VMIntegrationService
# on German hosts; VSS keeps its name). The other status texts and the VM Status are *unconfirmed*.
DE_DE = Texts(
    service_names={
        "Guest Service Interface": "Gastdienstschnittstelle",
        "Heartbeat": "Takt",
        "Key-Value Pair Exchange": "Austausch von Schlüsselwertepaaren",
        "Shutdown": "Herunterfahren",
        "Time Synchronization": "Zeitsynchronisierung",
    },
    status={
        IntegrationStatus.Ok: "OK",
        IntegrationStatus.NoContact: "Kein Kontakt",
        IntegrationStatus.LostCommunication: "Kommunikation unterbrochen",
        IntegrationStatus.Disabled: "Deaktiviert",
    },
    operating_normally="Normaler Betrieb",
    merging_disks="Datenträger werden zusammengeführt",
)
# Danish: only the Guest Service Interface name is seen in public scripts; the rest stays English here.
DA_DK = Texts(service_names={"Guest Service Interface": "Grænseflade til gæstetjeneste"}, status=EN_US.status)
LOCALES: dict[str, Texts] = {"en-US": EN_US, "de-DE": DE_DE, "da-DK": DA_DK}

# Windows Server 2012 R2 named the backup service after its Hyper-V Manager label (the review;
# *unconfirmed* beyond that), later versions call it "VSS".
WINDOWS_VERSIONS = ("2012R2", "2016", "2019", "2022", "2025")
LEGACY_VSS_NAME = "Backup (volume shadow copy)"


class HostDateTime(datetime):
    """A DateTime with the exact CLIXML text a real host writes (see ``HostCulture.clixml_time``)."""

    clixml: str


@dataclass(frozen=True)
class HostCulture:
    locale: str = "en-US"
    utc_offset: timedelta = timedelta(0)
    windows: str = "2022"

    @property
    def texts(self) -> Texts:
        return LOCALES[self.locale]

    def service_name(self, name: str) -> str:
        """The name this host prints for the service known in en-US as ``name``."""
        if name == "VSS" and self.windows == "2012R2":
            return LEGACY_VSS_NAME
        return self.texts.service_names.get(name, name)

    def status_text(self, status: IntegrationStatus) -> str:
        return self.texts.status.get(status) or EN_US.status.get(status) or status.name

    def local_time(self, t: float) -> HostDateTime:
        """Emulated seconds as a Local-kind .NET DateTime: the host's offset, 100 ns ticks, trailing
        zeros of the fraction trimmed (the round-trip "o" format CLIXML uses)."""
        ticks = round(t * 10**7)
        seconds, rest = divmod(ticks, 10**7)
        zone = timezone(self.utc_offset)
        local = datetime.fromtimestamp(seconds, tz=zone)
        value = HostDateTime(
            local.year,
            local.month,
            local.day,
            local.hour,
            local.minute,
            local.second,
            rest // 10,
            tzinfo=zone,
        )
        fraction = f"{rest:07d}".rstrip("0")
        total = int(self.utc_offset.total_seconds()) // 60
        sign = "-" if total < 0 else "+"
        offset = f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
        value.clixml = f"{local:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}{offset}"
        return value
